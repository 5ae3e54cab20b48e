//go:build ignore

// gen_kibana writes kibana/alerts.ndjson: enricher's Kibana 8.x saved objects (data
// views, saved searches, Lens visualizations, one dashboard) in the saved-objects export
// format, one object per line. Run it with `go generate ./dashboards`.
//
// Every field an object uses must be one the daemon writes in its default (compact)
// shape: fields written only with output.detail: full (controls.group,
// detections.capability_id, comments, references, per-entry provenance) are in the
// mapping detail index instead, which the alerts link to through <root>.details.
//
// Keep every KQL query to the subset the integration test translates faithfully:
// `field : "value"`, `field : value`, `field : *`, `not`, `and`, `or`, parentheses.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/enricher-dev/enricher/enrich/config"
)

const (
	coreMigration = "8.8.0"
	updatedAt     = "2026-11-24T00:00:00.000Z"

	// Data views.
	dvSecurity = "enricher-alerts-security"    // Elastic Security alerts only: ECS fields typed as Kibana maps them
	dvAll      = "enricher-alerts-all-sources" // every alert source enricher polls: only attack_mappings.* and @timestamp are used

	titleSecurity = ".alerts-security.alerts-*"
	titleAll      = ".alerts-security.alerts-*,logs-endpoint.alerts-*,wazuh-alerts-*,wazuh-findings-v5*,sigma-alerts-*"

	// The mapping detail index (output.details_index): one document per mapping, no time field.
	dvDetails     = "enricher-mapping-details"
	titleDetails  = config.DefaultDetailsIndex
	searchDetails = "enricher-search-mapping-details"

	// detailsURL is the URL format of <root>.details on the alert data views: Discover on
	// the details saved search with the KQL query ref : "<value>".
	//
	//   - Relative and without a leading slash: Kibana's UrlFormat resolves such a URL
	//     against <origin><basePath>/app/, basePath being the server base path plus the
	//     space (/s/<id>), so the link stays in the Kibana and the space it is shown in.
	//     "/app/discover…" would only work without a base path or space, and an absolute
	//     URL would tie the objects to one Kibana.
	//   - #/view/<id>: Discover loads the saved search (its data view, columns and sort),
	//     and the _a (app state) in the hash overrides its query. No index, no _g: the
	//     search names the data view, and the data view has no time field.
	//   - _a is rison, URL-encoded as Kibana writes it (encodeURIComponent, then @ : $ , ;
	//     left as they are, spaces as %20): query:'ref : "…"' becomes
	//     query:'ref%20:%20%22…%22'.
	//   - {{value}} is the value URL-encoded (encodeURIComponent), so a value cannot end
	//     the query parameter; {{rawValue}} would be inserted as it is. Details values
	//     (T1021.002@4ae3478e832a) hold no ' or !, which rison would need escaped.
	detailsURL   = "discover#/view/" + searchDetails + "?_a=(query:(language:kuery,query:'ref%20:%20%22{{value}}%22'))"
	detailsLabel = "{{value}}"
)

type obj = map[string]any

// mustJSON encodes v as a compact JSON string (Kibana stores several attributes as strings).
func mustJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		log.Fatal(err)
	}
	return string(bytes.TrimSpace(b.Bytes()))
}

// labels are the custom labels the data views give enricher's fields in Discover and Lens.
var labels = map[string]string{
	"attack_mappings.status":                    "ATT&CK mapping status",
	"attack_mappings.techniques":                "ATT&CK techniques",
	"attack_mappings.unmapped_techniques":       "ATT&CK techniques without mappings",
	"attack_mappings.has_detection":             "Has a product detection",
	"attack_mappings.frameworks":                "Mapping frameworks",
	"attack_mappings.controls.framework":        "Control framework",
	"attack_mappings.controls.id":               "Control",
	"attack_mappings.controls.name":             "Control name",
	"attack_mappings.controls.releases":         "Control framework releases",
	"attack_mappings.detections.product":        "Detection product",
	"attack_mappings.detections.score_category": "Detection score category",
	"attack_mappings.detections.alerts.id":      "Product alert ID",
	"attack_mappings.detections.alerts.name":    "Product alert name",
	"attack_mappings.detections.queries":        "Product hunting query",
	"attack_mappings.problems.reason":           "Enrichment problem",
	"attack_mappings.ruleset.version":           "Ruleset version",
	"attack_mappings.enriched_at":               "Enriched at",
	"attack_mappings.quarantine.reason":         "Quarantine reason",
	"attack_mappings.details":                   "Mapping details",
}

// alertFormats are the field formats of the alert data views: each details reference
// links to its mapping details.
var alertFormats = map[string]obj{
	"attack_mappings.details": {"id": "url", "params": obj{"type": "a", "urlTemplate": detailsURL, "labelTemplate": detailsLabel}},
}

// detailLabels are the custom labels of the mapping detail data view (fields of
// enrich.DetailSchema).
var detailLabels = map[string]string{
	"ref":                 "Mapping details reference",
	"ruleset.version":     "Ruleset version",
	"ruleset.hash":        "Ruleset hash",
	"technique":           "ATT&CK technique",
	"technique_name":      "ATT&CK technique name",
	"kind":                "Mapping kind",
	"framework":           "Framework",
	"framework_version":   "Framework version",
	"release":             "Framework release",
	"attack_version":      "ATT&CK version",
	"mapping_version":     "Mapping file version",
	"mapping_type":        "Mapping type",
	"source_mapping_type": "Mapping type as published",
	"capability_id":       "Control ID or product",
	"source_id":           "Capability ID as published",
	"name":                "Control or product name",
	"group":               "Control family or group",
	"score_category":      "Score category",
	"score_value":         "Score value",
	"comments":            "Comments",
	"references":          "References",
	"alerts.id":           "Product alert ID",
	"alerts.name":         "Product alert name",
	"queries":             "Hunting query",
	"events.id":           "Windows event ID",
	"source_technique":    "ATT&CK technique as published",
}

// dataView is an index-pattern object: timeField "" for none; allowHidden for patterns
// that match hidden indices or aliases.
func dataView(id, name, title, timeField string, allowHidden bool, labels map[string]string, formats map[string]obj) obj {
	attrs := obj{}
	for f, l := range labels {
		attrs[f] = obj{"customLabel": l}
	}
	fm := obj{}
	for f, v := range formats {
		fm[f] = v
	}
	a := obj{
		"name": name, "title": title,
		"allowHidden":    allowHidden,
		"fieldAttrs":     mustJSON(attrs),
		"fieldFormatMap": mustJSON(fm), "fields": "[]", "runtimeFieldMap": "{}", "sourceFilters": "[]", "typeMeta": "{}",
	}
	if timeField != "" {
		a["timeFieldName"] = timeField
	}
	return obj{
		"id": id, "type": "index-pattern", "managed": false,
		"coreMigrationVersion": coreMigration, "typeMigrationVersion": "8.0.0", "updated_at": updatedAt,
		"references": []any{},
		"attributes": a,
	}
}

// detailColumns and detailSort are those of the saved search over the mapping detail
// index (shared with gen_opensearch.go).
var (
	detailColumns = []string{"technique", "kind", "release", "capability_id", "name", "score_category", "score_value", "comments", "references"}
	detailSort    = [][]string{{"technique", "asc"}, {"kind", "asc"}, {"capability_id", "asc"}, {"release", "asc"}}
)

// byTime is the sort of the alert searches: newest first.
var byTime = [][]string{{"@timestamp", "desc"}}

func savedSearch(id, title, desc, dv, query string, columns []string, sort [][]string) obj {
	src := obj{
		"query":        obj{"query": query, "language": "kuery"},
		"filter":       []any{},
		"indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
	}
	return obj{
		"id": id, "type": "search", "managed": false,
		"coreMigrationVersion": coreMigration, "typeMigrationVersion": "8.0.0", "updated_at": updatedAt,
		"references": []any{obj{"id": dv, "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}},
		"attributes": obj{
			"title": title, "description": desc, "columns": columns,
			"sort": sort, "grid": obj{}, "hideChart": false,
			"isTextBasedQuery": false, "timeRestore": false,
			"kibanaSavedObjectMeta": obj{"searchSourceJSON": mustJSON(src)},
		},
	}
}

// Lens columns.

func count(id string) obj {
	return obj{"label": "Alerts", "customLabel": true, "dataType": "number", "operationType": "count",
		"isBucketed": false, "scale": "ratio", "sourceField": "___records___", "params": obj{"emptyAsNull": true}}
}

func terms(field, label, orderCol string, size int, dataType string) obj {
	return obj{"label": label, "customLabel": true, "dataType": dataType, "operationType": "terms",
		"isBucketed": true, "scale": "ordinal", "sourceField": field,
		"params": obj{"size": size, "orderBy": obj{"type": "column", "columnId": orderCol},
			"orderDirection": "desc", "otherBucket": true, "missingBucket": false, "parentFormat": obj{"id": "terms"}}}
}

func dateHistogram(field string) obj {
	return obj{"label": field, "dataType": "date", "operationType": "date_histogram", "isBucketed": true,
		"scale": "interval", "sourceField": field,
		"params": obj{"interval": "auto", "includeEmptyRows": true, "dropPartials": false}}
}

type column struct {
	id  string
	def obj
}

func lens(id, title, desc, dv, vizType, query string, cols []column, viz obj) obj {
	layer := "layer1"
	columns, order := obj{}, []string{}
	for _, c := range cols {
		columns[c.id] = c.def
		order = append(order, c.id)
	}
	return obj{
		"id": id, "type": "lens", "managed": false,
		"coreMigrationVersion": coreMigration, "typeMigrationVersion": "8.9.0", "updated_at": updatedAt,
		"references": []any{obj{"id": dv, "name": "indexpattern-datasource-layer-" + layer, "type": "index-pattern"}},
		"attributes": obj{
			"title": title, "description": desc, "visualizationType": vizType,
			"state": obj{
				"adHocDataViews": obj{}, "internalReferences": []any{}, "filters": []any{},
				"query": obj{"query": query, "language": "kuery"},
				"datasourceStates": obj{
					"formBased": obj{"layers": obj{layer: obj{
						"columns": columns, "columnOrder": order, "incompleteColumns": obj{}, "sampling": 1,
					}}},
					"indexpattern": obj{"layers": obj{}},
					"textBased":    obj{"layers": obj{}},
				},
				"visualization": viz,
			},
		},
	}
}

func xy(series string, x, split string, y ...string) obj {
	l := obj{"layerId": "layer1", "layerType": "data", "seriesType": series, "accessors": y, "xAccessor": x}
	if split != "" {
		l["splitAccessor"] = split
	}
	return obj{
		"layers": []any{l}, "preferredSeriesType": series, "valueLabels": "hide",
		"legend": obj{"isVisible": true, "position": "right"}, "fittingFunction": "None",
		"axisTitlesVisibilitySettings": obj{"x": true, "yLeft": true, "yRight": true},
	}
}

func table(cols ...string) obj {
	cs := []any{}
	for _, c := range cols {
		cs = append(cs, obj{"columnId": c, "isTransposed": false})
	}
	return obj{"layerId": "layer1", "layerType": "data", "columns": cs}
}

func donut(group, metric string) obj {
	return obj{"shape": "donut", "layers": []any{obj{
		"layerId": "layer1", "layerType": "data", "primaryGroups": []string{group}, "metrics": []string{metric},
		"numberDisplay": "percent", "categoryDisplay": "default", "legendDisplay": "default", "nestedLegend": false,
	}}}
}

type panel struct {
	id, typ    string
	x, y, w, h int
}

func dashboard(id, title, desc string, panels []panel) obj {
	ps, refs := []any{}, []any{}
	for i, p := range panels {
		idx := fmt.Sprintf("p%d", i+1)
		ps = append(ps, obj{
			"version": "8.11.0", "type": p.typ, "panelIndex": idx, "panelRefName": "panel_" + idx,
			"gridData":         obj{"x": p.x, "y": p.y, "w": p.w, "h": p.h, "i": idx},
			"embeddableConfig": obj{"enhancements": obj{}},
		})
		refs = append(refs, obj{"id": p.id, "name": idx + ":panel_" + idx, "type": p.typ})
	}
	return obj{
		"id": id, "type": "dashboard", "managed": false,
		"coreMigrationVersion": coreMigration, "typeMigrationVersion": "8.9.0", "updated_at": updatedAt,
		"references": refs,
		"attributes": obj{
			"title": title, "description": desc, "version": 1, "timeRestore": false,
			"optionsJSON": mustJSON(obj{"useMargins": true, "syncColors": false, "syncCursor": true,
				"syncTooltips": false, "hidePanelTitles": false}),
			"panelsJSON": mustJSON(ps),
			"kibanaSavedObjectMeta": obj{"searchSourceJSON": mustJSON(obj{
				"query": obj{"query": "", "language": "kuery"}, "filter": []any{}})},
		},
	}
}

// The KQL queries of the analyst questions, shared with the OpenSearch Dashboards objects
// (gen_opensearch.go).
const (
	qT1021002     = `attack_mappings.techniques : "T1021.002"`
	qNoDetection  = `attack_mappings.techniques : * and attack_mappings.has_detection : false`
	qProblems     = `attack_mappings.problems.reason : *`
	qTagsDiffer   = `attack_mappings.compliance_check.differs : true`
	qQuarantined  = `attack_mappings.status : "quarantined"`
	qNISTControls = `attack_mappings.controls.framework : "nist_800_53"`
	qDetect       = `attack_mappings.detections.score_category : "detect"`
	qAnyTechnique = `attack_mappings.techniques : *`
)

func objects() []obj {
	c, t, d := "count", "bucket", "time"
	return []obj{
		// .alerts-security.alerts-<space> is a hidden alias of hidden indices.
		dataView(dvSecurity, "Elastic Security alerts (enricher)", titleSecurity, "@timestamp", true, labels, alertFormats),
		dataView(dvAll, "All enriched alert sources (enricher)", titleAll, "@timestamp", true, labels, alertFormats),
		dataView(dvDetails, "ATT&CK mapping details (enricher)", titleDetails, "", false, detailLabels, nil),

		savedSearch("enricher-search-open-t1021-002", "Open T1021.002 alerts: controls and Defender for Identity alerts",
			"Open Elastic Security alerts for SMB/Windows Admin Shares (T1021.002) that enricher mapped to Microsoft Defender for Identity; the product alert ID column lists the IDs of every mapped product alert, and each mapping details value opens the comments and references of its technique's mappings.",
			dvSecurity,
			`kibana.alert.workflow_status : "open" and attack_mappings.techniques : "T1021.002" and attack_mappings.detections.product : "Microsoft Defender for Identity"`,
			[]string{"host.name", "user.name", "kibana.alert.rule.name", "kibana.alert.severity",
				"attack_mappings.controls.id", "attack_mappings.detections.alerts.id", "attack_mappings.detections.alerts.name",
				"attack_mappings.details"}, byTime),
		savedSearch("enricher-search-no-detection", "Alerts whose technique has no product detection mapped",
			"Alerts from every source whose ATT&CK techniques have no detect-scored product detection in the ruleset.",
			dvAll, qNoDetection,
			[]string{"attack_mappings.status", "attack_mappings.techniques", "attack_mappings.unmapped_techniques", "attack_mappings.ruleset.version"}, byTime),
		savedSearch("enricher-search-problems", "Alerts with enrichment problems",
			"Alerts where enricher skipped a malformed technique value (see attack_mappings.problems).",
			dvAll, qProblems,
			[]string{"attack_mappings.status", "attack_mappings.problems.field", "attack_mappings.problems.value", "attack_mappings.problems.reason"}, byTime),

		savedSearch("enricher-search-nist-tags-differ", "Alerts whose rule's NIST tags differ from CTID's mappings",
			"Wazuh alerts whose rule's own NIST SP 800-53 tags (rule.nist_800_53) name controls CTID does not map to the alert's techniques, or miss ones it does.",
			dvAll, qTagsDiffer,
			[]string{"attack_mappings.techniques", "attack_mappings.compliance_check.only_alert", "attack_mappings.compliance_check.both", "attack_mappings.compliance_check.only_ctid"}, byTime),

		savedSearch("enricher-search-quarantined", "Quarantined alerts",
			"Alerts enricher gave up on after its attempt budget (or at once, when larger than daemon.max_alert_bytes): the reason and the attempts. Requeue them with `enricher requeue` once the cause is fixed.",
			dvAll, qQuarantined,
			[]string{"attack_mappings.quarantine.reason", "attack_mappings.quarantine.attempts", "attack_mappings.quarantine.at", "attack_mappings.quarantine.generation"}, byTime),

		savedSearch(searchDetails, "ATT&CK mapping details",
			"Every mapping of the loaded rulesets, one document per mapping: what the alerts leave off (comments, references, provenance). A value of an alert's Mapping details field (attack_mappings.details) opens this search filtered to the mappings of its technique in the ruleset the alert was enriched with.",
			dvDetails, ``, detailColumns, detailSort),

		lens("enricher-lens-by-nist-control", "Alerts by NIST 800-53 control",
			"Alerts per NIST SP 800-53 control mapped to their techniques (an alert counts once per control).",
			dvAll, "lnsXY", qNISTControls,
			[]column{{t, terms("attack_mappings.controls.id", "NIST control", c, 20, "string")}, {c, count(c)}},
			xy("bar_horizontal", t, "", c)),
		lens("enricher-lens-by-detection-product", "Alerts by product detection",
			"Alerts per product whose detect-scored detection is mapped to their techniques.",
			dvAll, "lnsXY", qDetect,
			[]column{{t, terms("attack_mappings.detections.product", "Detection product", c, 15, "string")}, {c, count(c)}},
			xy("bar_horizontal", t, "", c)),
		lens("enricher-lens-technique-over-time", "Alerts by ATT&CK technique over time",
			"Enriched alerts over time, split by ATT&CK technique.",
			dvAll, "lnsXY", qAnyTechnique,
			[]column{{d, dateHistogram("@timestamp")}, {t, terms("attack_mappings.techniques", "ATT&CK technique", c, 10, "string")}, {c, count(c)}},
			xy("bar_stacked", d, t, c)),
		lens("enricher-lens-t1021-002-hosts", "Top hosts behind T1021.002",
			"Hosts with the most Elastic Security alerts for SMB/Windows Admin Shares (T1021.002).",
			dvSecurity, "lnsDatatable", qT1021002,
			[]column{{t, terms("host.name", "Host", c, 10, "string")}, {c, count(c)}},
			table(t, c)),
		lens("enricher-lens-t1021-002-users", "Top users behind T1021.002",
			"Users with the most Elastic Security alerts for SMB/Windows Admin Shares (T1021.002).",
			dvSecurity, "lnsDatatable", qT1021002,
			[]column{{t, terms("user.name", "User", c, 10, "string")}, {c, count(c)}},
			table(t, c)),
		lens("enricher-lens-no-detection", "Alerts whose technique has no product detection mapped",
			"Alerts per technique where no detect-scored product detection is mapped: detection gaps.",
			dvAll, "lnsXY", qNoDetection,
			[]column{{t, terms("attack_mappings.techniques", "ATT&CK technique", c, 20, "string")}, {c, count(c)}},
			xy("bar_horizontal", t, "", c)),
		lens("enricher-lens-status", "Alerts by enrichment status",
			"enriched: mappings found; unmapped: techniques without mappings; no_technique: only malformed technique values.",
			dvAll, "lnsPie", ``,
			[]column{{t, terms("attack_mappings.status", "Status", c, 5, "string")}, {c, count(c)}},
			donut(t, c)),

		dashboard("enricher-dashboard-attack-mappings", "enricher: ATT&CK mappings on alerts",
			"NIST 800-53 controls and product detections that enricher mapped onto alerts, technique trends, the hosts and users behind T1021.002, detection gaps, and the ATT&CK mapping details (comments, references) that each alert's Mapping details values link to.",
			[]panel{
				{"enricher-lens-by-nist-control", "lens", 0, 0, 24, 15},
				{"enricher-lens-by-detection-product", "lens", 24, 0, 24, 15},
				{"enricher-lens-technique-over-time", "lens", 0, 15, 32, 15},
				{"enricher-lens-status", "lens", 32, 15, 16, 15},
				{"enricher-lens-t1021-002-hosts", "lens", 0, 30, 16, 15},
				{"enricher-lens-t1021-002-users", "lens", 16, 30, 16, 15},
				{"enricher-lens-no-detection", "lens", 32, 30, 16, 15},
				{"enricher-search-open-t1021-002", "search", 0, 45, 48, 18},
				{"enricher-search-quarantined", "search", 0, 63, 48, 12},
				{searchDetails, "search", 0, 75, 48, 15},
			}),
	}
}

// output is a further file written by a generator built together with this one
// (`go run gen_kibana.go gen_opensearch.go …`): its init registers the flag that names it.
type output struct {
	path    *string
	objects func() []obj
}

var outputs []output

func writeNDJSON(path string, objs []obj) {
	var b bytes.Buffer
	for _, o := range objs {
		b.WriteString(mustJSON(o))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}

func main() {
	out := flag.String("o", "kibana/alerts.ndjson", "output file")
	flag.Parse()
	writeNDJSON(*out, objects())
	for _, o := range outputs {
		if *o.path != "" {
			writeNDJSON(*o.path, o.objects())
		}
	}
}
