//go:build ignore

// gen_opensearch writes opensearch/enricher.ndjson: enricher's saved objects for
// OpenSearch Dashboards 2.x, whose saved-objects format is Kibana 7.10's (index patterns,
// saved searches, legacy visualizations with a visState, a dashboard; no Lens). It is
// built together with gen_kibana.go, whose shared definitions it uses (the KQL queries of
// the analyst questions, the mapping-details columns, mustJSON):
//
//	go run gen_kibana.go gen_opensearch.go -o kibana/alerts.ndjson -opensearch opensearch/enricher.ndjson
//
// which is what `go generate ./dashboards` runs. Every attack_mappings.* field named here
// must be a leaf of enrich.Schema (am, checkQuery): the generator stops otherwise.
//
// Keep every query to the KQL subset the tests translate (ParseKQL in check.go), and
// every aggregation to count, terms (ordered by the count or the key) and date_histogram
// (PlanOpenSearch in opensearch.go).
package main

import (
	"flag"
	"fmt"
	"log"
	"regexp"
	"strings"

	"github.com/enricher-dev/enricher/enrich"
)

func init() {
	outputs = append(outputs, output{
		path:    flag.String("opensearch", "", "also write the OpenSearch Dashboards saved objects to this file"),
		objects: opensearchObjects,
	})
}

// Kibana 7.10's migration versions, the newest OpenSearch Dashboards 2.x knows for these
// types: an object at these versions is imported as it is.
var osdMigration = map[string]string{
	"index-pattern": "7.6.0",
	"search":        "7.9.3",
	"visualization": "7.10.0",
	"dashboard":     "7.9.3",
}

const (
	// Index patterns.
	ipWazuh   = "enricher-os-wazuh-alerts"       // Wazuh alerts: Wazuh's own fields, time field timestamp
	ipAllOS   = "enricher-os-alerts-all-sources" // every alert source enricher polls on OpenSearch: only attack_mappings.* and @timestamp
	ipDetails = "enricher-os-mapping-details"    // the mapping detail index (output.details_index)

	titleWazuh = "wazuh-alerts-*"

	// Wazuh alert fields (the Wazuh indexer's template maps every string as keyword, and
	// timestamp as a date: the time field of Wazuh's own wazuh-alerts-* index pattern).
	wzTime  = "timestamp"
	wzAgent = "agent.name"
	wzUser  = "data.win.eventdata.targetUserName"
	wzRule  = "rule.description"
	wzNIST  = "rule.nist_800_53"

	allTime  = "@timestamp" // the time field of the other sources
	searchOS = "enricher-os-search-mapping-details"
)

// titleAllOS is Kibana's all-sources data view without Elastic Security's alerts index,
// which only Kibana writes.
var titleAllOS = strings.TrimPrefix(titleAll, titleSecurity+",")

var schemaLeaves = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range enrich.SchemaPaths() {
		m[p] = true
	}
	return m
}()

// am returns the alert field at path under enricher's root; path must be a leaf of
// enrich.Schema.
func am(path string) string {
	if !schemaLeaves[path] {
		log.Fatalf("gen_opensearch: %s is not a leaf of enrich.Schema", path)
	}
	return enrich.Under(enrich.DefaultRoot, path)
}

var reRootField = regexp.MustCompile(regexp.QuoteMeta(enrich.DefaultRoot) + `\.[A-Za-z0-9_.]+`)

// checkQuery stops the generator when a query names a field under the root that is not
// a leaf of enrich.Schema.
func checkQuery(q string) string {
	for _, f := range reRootField.FindAllString(q, -1) {
		am(strings.TrimPrefix(f, enrich.DefaultRoot+"."))
	}
	return q
}

func osObject(id, typ string, refs []any, attrs obj) obj {
	if refs == nil {
		refs = []any{}
	}
	return obj{
		"id": id, "type": typ, "updated_at": updatedAt,
		"migrationVersion": obj{typ: osdMigration[typ]},
		"references":       refs, "attributes": attrs,
	}
}

// indexPattern: fields "[]" makes OpenSearch Dashboards read the fields from the
// indices when the pattern is first used.
func indexPattern(id, title, timeField string) obj {
	a := obj{"title": title, "fields": "[]"}
	if timeField != "" {
		a["timeFieldName"] = timeField
	}
	return osObject(id, "index-pattern", nil, a)
}

const indexRef = "kibanaSavedObjectMeta.searchSourceJSON.index"

func searchSource(query string) obj {
	return obj{"kibanaSavedObjectMeta": obj{"searchSourceJSON": mustJSON(obj{
		"query":        obj{"query": checkQuery(query), "language": "kuery"},
		"filter":       []any{},
		"indexRefName": indexRef,
	})}}
}

func indexRefs(ip string) []any {
	return []any{obj{"id": ip, "name": indexRef, "type": "index-pattern"}}
}

func osSearch(id, title, desc, ip, query string, columns []string, sort [][]string) obj {
	a := searchSource(query)
	a["title"], a["description"], a["hits"], a["version"] = title, desc, 0, 1
	a["columns"], a["sort"] = columns, sort
	return osObject(id, "search", indexRefs(ip), a)
}

// Aggregations of a legacy visualization. The metric is always agg "1", a count.

func countAgg() obj {
	return obj{"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": obj{"customLabel": "Alerts"}}
}

func termsAgg(id, schema, field, label string, size int) obj {
	return obj{"id": id, "enabled": true, "type": "terms", "schema": schema, "params": obj{
		"field": field, "orderBy": "1", "order": "desc", "size": size,
		"otherBucket": false, "otherBucketLabel": "Other", "missingBucket": false, "missingBucketLabel": "Missing",
		"customLabel": label,
	}}
}

func dateHistogramAgg(id, field string) obj {
	return obj{"id": id, "enabled": true, "type": "date_histogram", "schema": "segment", "params": obj{
		"field": field, "useNormalizedOpenSearchInterval": true, "scaleMetricValues": false,
		"interval": "auto", "drop_partials": false, "min_doc_count": 1, "extended_bounds": obj{},
	}}
}

// barParams are the vislib defaults of a bar chart (histogram: vertical, stacked;
// horizontal_bar), with the count labelled "Alerts".
func barParams(horizontal bool) obj {
	catPos, valPos, mode := "bottom", "left", "stacked"
	catLabels := obj{"show": true, "filter": true, "truncate": 100}
	valLabels := obj{"show": true, "rotate": 0, "filter": false, "truncate": 100}
	if horizontal {
		catPos, valPos, mode = "left", "bottom", "normal"
		catLabels = obj{"show": true, "rotate": 0, "filter": false, "truncate": 200}
		valLabels = obj{"show": true, "rotate": 75, "filter": true, "truncate": 100}
	}
	return obj{
		"type": "histogram", "grid": obj{"categoryLines": false},
		"categoryAxes": []any{obj{"id": "CategoryAxis-1", "type": "category", "position": catPos, "show": true,
			"style": obj{}, "scale": obj{"type": "linear"}, "labels": catLabels, "title": obj{}}},
		"valueAxes": []any{obj{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": valPos, "show": true,
			"style": obj{}, "scale": obj{"type": "linear", "mode": "normal"}, "labels": valLabels, "title": obj{"text": "Alerts"}}},
		"seriesParams": []any{obj{"show": true, "type": "histogram", "mode": mode, "data": obj{"label": "Alerts", "id": "1"},
			"valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": true, "lineWidth": 2, "showCircles": true}},
		"addTooltip": true, "addLegend": true, "legendPosition": "right", "times": []any{}, "addTimeMarker": false,
		"labels":        obj{"show": false},
		"thresholdLine": obj{"show": false, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
	}
}

func tableParams() obj {
	return obj{"perPage": 10, "showPartialRows": false, "showMetricsAtAllLevels": false,
		"sort": obj{"columnIndex": nil, "direction": nil}, "showTotal": false, "totalFunc": "sum", "percentageCol": ""}
}

func donutParams() obj {
	return obj{"type": "pie", "addTooltip": true, "addLegend": true, "legendPosition": "right", "isDonut": true,
		"labels": obj{"show": false, "values": true, "last_level": true, "truncate": 100}}
}

func osVis(id, title, desc, ip, query, visType string, params obj, aggs ...obj) obj {
	a := searchSource(query)
	a["title"], a["description"], a["version"], a["uiStateJSON"] = title, desc, 1, "{}"
	all := append([]obj{countAgg()}, aggs...)
	a["visState"] = mustJSON(obj{"title": title, "type": visType, "params": params, "aggs": all})
	return osObject(id, "visualization", indexRefs(ip), a)
}

// osDashboard: panels (gen_kibana.go's panel) refer to their objects by panelRefName
// panel_<n> (Kibana 7.x).
func osDashboard(id, title, desc string, panels []panel) obj {
	ps, refs := []any{}, []any{}
	for i, p := range panels {
		idx := fmt.Sprint(i + 1)
		ref := fmt.Sprintf("panel_%d", i)
		ps = append(ps, obj{
			"version": "7.10.0", "panelIndex": idx, "panelRefName": ref, "embeddableConfig": obj{},
			"gridData": obj{"x": p.x, "y": p.y, "w": p.w, "h": p.h, "i": idx},
		})
		refs = append(refs, obj{"id": p.id, "name": ref, "type": p.typ})
	}
	return osObject(id, "dashboard", refs, obj{
		"title": title, "description": desc, "hits": 0, "version": 1, "timeRestore": false,
		"optionsJSON": mustJSON(obj{"useMargins": true, "hidePanelTitles": false}),
		"panelsJSON":  mustJSON(ps),
		"kibanaSavedObjectMeta": obj{"searchSourceJSON": mustJSON(obj{
			"query": obj{"query": "", "language": "kuery"}, "filter": []any{}})},
	})
}

func opensearchObjects() []obj {
	newest := [][]string{{allTime, "desc"}}
	newestWazuh := [][]string{{wzTime, "desc"}}
	return []obj{
		indexPattern(ipWazuh, titleWazuh, wzTime),
		indexPattern(ipAllOS, titleAllOS, allTime),
		indexPattern(ipDetails, titleDetails, ""),

		osSearch("enricher-os-search-t1021-002", "T1021.002 alerts (Wazuh): agents, users, controls and product detections",
			"Wazuh alerts for SMB/Windows Admin Shares (T1021.002, also when the rule names the revoked T1077): the NIST controls and product detections enricher mapped, and the mapping details references (open one with the saved search ATT&CK mapping details and the query ref : \"<value>\").",
			ipWazuh, qT1021002,
			[]string{wzAgent, wzUser, wzRule, am("controls.id"), am("detections.product"), am("detections.alerts.id"), am(enrich.FieldDetails)},
			newestWazuh),
		osSearch("enricher-os-search-nist-tags-differ", "Wazuh alerts whose rule's NIST tags differ from CTID's mappings",
			"Wazuh alerts whose rule's own NIST SP 800-53 tags (rule.nist_800_53) name controls CTID does not map to the alert's techniques, or miss ones it does.",
			ipWazuh, qTagsDiffer,
			[]string{wzAgent, wzRule, wzNIST, am("techniques"), am("compliance_check.only_alert"), am("compliance_check.both"), am("compliance_check.only_ctid")},
			newestWazuh),
		osSearch("enricher-os-search-no-detection", "Alerts whose technique has no product detection mapped",
			"Alerts from every source whose ATT&CK techniques have no detect-scored product detection in the ruleset.",
			ipAllOS, qNoDetection,
			[]string{am("status"), am("techniques"), am("unmapped_techniques"), am(enrich.FieldRulesetVersion)}, newest),
		osSearch("enricher-os-search-problems", "Alerts with enrichment problems",
			"Alerts where enricher skipped a malformed technique value (see attack_mappings.problems).",
			ipAllOS, qProblems,
			[]string{am("status"), am("problems.field"), am("problems.value"), am("problems.reason")}, newest),
		osSearch("enricher-os-search-quarantined", "Quarantined alerts",
			"Alerts enricher gave up on after its attempt budget (or at once, when larger than daemon.max_alert_bytes): the reason and the attempts. Requeue them with `enricher requeue` once the cause is fixed.",
			ipAllOS, qQuarantined,
			[]string{am("quarantine.reason"), am("quarantine.attempts"), am("quarantine.at"), am(enrich.FieldQuarantineGeneration)}, newest),
		osSearch(searchOS, "ATT&CK mapping details",
			"Every mapping of the loaded rulesets, one document per mapping: what the alerts leave off (comments, references, provenance). Query ref : \"<value>\" with a value of an alert's attack_mappings.details to see the mappings of its technique in the ruleset the alert was enriched with.",
			ipDetails, ``, detailColumns, detailSort),

		osVis("enricher-os-vis-by-nist-control", "Alerts by NIST 800-53 control",
			"Alerts per NIST SP 800-53 control mapped to their techniques (an alert counts once per control).",
			ipAllOS, qNISTControls, "horizontal_bar", barParams(true),
			termsAgg("2", "segment", am("controls.id"), "NIST control", 20)),
		osVis("enricher-os-vis-by-detection-product", "Alerts by product detection",
			"Alerts per product whose detect-scored detection is mapped to their techniques.",
			ipAllOS, qDetect, "horizontal_bar", barParams(true),
			termsAgg("2", "segment", am("detections.product"), "Detection product", 15)),
		osVis("enricher-os-vis-technique-over-time", "Alerts by ATT&CK technique over time",
			"Enriched alerts over time, split by ATT&CK technique.",
			ipAllOS, qAnyTechnique, "histogram", barParams(false),
			dateHistogramAgg("2", allTime), termsAgg("3", "group", am("techniques"), "ATT&CK technique", 10)),
		osVis("enricher-os-vis-t1021-002-agents", "Top Wazuh agents behind T1021.002",
			"Wazuh agents with the most alerts for SMB/Windows Admin Shares (T1021.002).",
			ipWazuh, qT1021002, "table", tableParams(),
			termsAgg("2", "bucket", wzAgent, "Agent", 10)),
		osVis("enricher-os-vis-t1021-002-users", "Top users behind T1021.002 (Wazuh)",
			"Target users of the Windows logons behind Wazuh's T1021.002 alerts.",
			ipWazuh, qT1021002, "table", tableParams(),
			termsAgg("2", "bucket", wzUser, "User", 10)),
		osVis("enricher-os-vis-nist-tags-only-alert", "Wazuh rule NIST tags that CTID does not map",
			"NIST SP 800-53 controls Wazuh rules tag (rule.nist_800_53) that CTID does not map to the alerts' techniques.",
			ipWazuh, qTagsDiffer, "table", tableParams(),
			termsAgg("2", "bucket", am("compliance_check.only_alert"), "NIST tag only on the rule", 20)),
		osVis("enricher-os-vis-no-detection", "Alerts whose technique has no product detection mapped",
			"Alerts per technique where no detect-scored product detection is mapped: detection gaps.",
			ipAllOS, qNoDetection, "horizontal_bar", barParams(true),
			termsAgg("2", "segment", am("techniques"), "ATT&CK technique", 20)),
		osVis("enricher-os-vis-status", "Alerts by enrichment status",
			"enriched: mappings found; unmapped: techniques without mappings; no_technique: only malformed technique values; quarantined.",
			ipAllOS, ``, "pie", donutParams(),
			termsAgg("2", "segment", am("status"), "Status", 5)),

		osDashboard("enricher-os-dashboard-attack-mappings", "enricher: ATT&CK mappings on alerts",
			"NIST 800-53 controls and product detections that enricher mapped onto alerts, technique trends, the Wazuh agents and users behind T1021.002, Wazuh rules whose NIST tags differ from CTID's mappings, detection gaps, and quarantined alerts.",
			[]panel{
				{"enricher-os-vis-by-nist-control", "visualization", 0, 0, 24, 15},
				{"enricher-os-vis-by-detection-product", "visualization", 24, 0, 24, 15},
				{"enricher-os-vis-technique-over-time", "visualization", 0, 15, 32, 15},
				{"enricher-os-vis-status", "visualization", 32, 15, 16, 15},
				{"enricher-os-vis-t1021-002-agents", "visualization", 0, 30, 16, 15},
				{"enricher-os-vis-t1021-002-users", "visualization", 16, 30, 16, 15},
				{"enricher-os-vis-no-detection", "visualization", 32, 30, 16, 15},
				{"enricher-os-search-t1021-002", "search", 0, 45, 48, 18},
				{"enricher-os-vis-nist-tags-only-alert", "visualization", 0, 63, 16, 15},
				{"enricher-os-search-nist-tags-differ", "search", 16, 63, 32, 15},
				{"enricher-os-search-quarantined", "search", 0, 78, 48, 12},
			}),
	}
}
