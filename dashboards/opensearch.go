package dashboards

// Reading OpenSearch Dashboards saved objects (opensearch/enricher.ndjson: the Kibana
// 7.10 format, legacy visualizations, no Lens) into the same data views, field uses and
// queries as the Kibana objects (kibana.go), so that the tests run them against a real
// OpenSearch the way OpenSearch Dashboards would.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// OpenSearchFile is the OpenSearch Dashboards saved-objects file of this package.
const OpenSearchFile = "opensearch/enricher.ndjson"

// osdTypes are the saved-object types of the file, with the newest migration version
// OpenSearch Dashboards 2.x knows for each (Kibana 7.10's): an object at a newer version
// is refused on import.
var osdTypes = map[string]string{
	"index-pattern": "7.6.0",
	"search":        "7.9.3",
	"visualization": "7.10.0",
	"dashboard":     "7.9.3",
}

// osdIndexPatternAttrs are the attributes of a Kibana 7.10 index pattern; anything else
// (fieldAttrs and its custom labels came with Kibana 7.11, allowHidden, name,
// runtimeFieldMap with 8.x) OpenSearch Dashboards ignores or refuses.
var osdIndexPatternAttrs = map[string]bool{
	"title": true, "timeFieldName": true, "fields": true, "fieldFormatMap": true,
	"sourceFilters": true, "typeMeta": true, "type": true, "intervalName": true,
}

// osdVisSchemas are the agg schemas each legacy visualization type takes, with the most
// aggs of that schema (0: any number); metric aggs are the "metric" and "radius" schemas.
var osdVisSchemas = map[string]map[string]int{
	"histogram":      {"metric": 0, "radius": 1, "segment": 1, "group": 3, "split": 1},
	"horizontal_bar": {"metric": 0, "radius": 1, "segment": 1, "group": 3, "split": 1},
	"line":           {"metric": 0, "radius": 1, "segment": 1, "group": 3, "split": 1},
	"area":           {"metric": 0, "radius": 1, "segment": 1, "group": 3, "split": 1},
	"pie":            {"metric": 1, "segment": 0, "split": 1},
	"table":          {"metric": 0, "bucket": 0, "split": 1},
}

// versionAbove reports whether dotted version a is above b.
func versionAbove(a, b string) (bool, error) {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		var err error
		if i < len(pa) {
			if x, err = strconv.Atoi(pa[i]); err != nil {
				return false, fmt.Errorf("version %q", a)
			}
		}
		if i < len(pb) {
			if y, err = strconv.Atoi(pb[i]); err != nil {
				return false, fmt.Errorf("version %q", b)
			}
		}
		if x != y {
			return x > y, nil
		}
	}
	return false, nil
}

// PlanOpenSearch walks OpenSearch Dashboards saved objects and returns their index
// patterns (as DataViews), every field use and every query (saved searches; each
// visualization's query and aggregations), with an error for each structural problem:
// a type or migration version OpenSearch Dashboards 2.x does not import, an unresolved
// reference, an index pattern attribute of a later Kibana, a visualization type, agg
// schema or agg outside what the tests translate, KQL outside ParseKQL's subset.
func PlanOpenSearch(objs []SavedObject) (map[string]DataView, []FieldUse, []Query, []error) {
	var errs []error
	bad := func(o SavedObject, f string, a ...any) {
		errs = append(errs, fmt.Errorf("%s %q: %s", o.Type, o.ID, fmt.Sprintf(f, a...)))
	}
	checkReferences(objs, bad)
	for _, o := range objs {
		newest, ok := osdTypes[o.Type]
		if !ok {
			bad(o, "type %q is not one OpenSearch Dashboards imports from this file (no Lens)", o.Type)
			continue
		}
		if o.TypeMigrationVersion != "" || o.CoreMigrationVersion != "" {
			bad(o, "typeMigrationVersion/coreMigrationVersion are Kibana 8's: use migrationVersion")
		}
		v := o.MigrationVersion[o.Type]
		if v == "" {
			bad(o, "no migrationVersion.%s", o.Type)
		} else if above, err := versionAbove(v, newest); err != nil || above {
			bad(o, "migrationVersion %s %q is newer than %s (%v)", o.Type, v, newest, err)
		}
	}
	views := map[string]DataView{}
	var uses []FieldUse
	var queries []Query
	use := func(o SavedObject, dv, field, u, dt string) {
		uses = append(uses, FieldUse{Object: o.Type + "/" + o.ID, DataView: dv, Field: field, Use: u, DataType: dt})
	}
	for _, o := range objs {
		if o.Type != "index-pattern" {
			continue
		}
		for k := range o.Attributes {
			if !osdIndexPatternAttrs[k] {
				bad(o, "attribute %q is not one of a Kibana 7.10 index pattern", k)
			}
		}
		dv := DataView{ID: o.ID}
		dv.Title, _ = o.Attributes["title"].(string)
		dv.TimeField, _ = o.Attributes["timeFieldName"].(string)
		if dv.Title == "" {
			bad(o, "no title")
		}
		if s, _ := o.Attributes["fields"].(string); s != "" {
			var fs []any
			if err := json.Unmarshal([]byte(s), &fs); err != nil {
				bad(o, "fields: %v", err)
			}
		}
		if s, _ := o.Attributes["fieldFormatMap"].(string); s != "" {
			if err := json.Unmarshal([]byte(s), &dv.Formats); err != nil {
				bad(o, "fieldFormatMap: %v", err)
			}
			if len(dv.Formats) > 0 {
				bad(o, "field formats are not checked by the tests")
			}
		}
		if dv.TimeField != "" {
			use(o, o.ID, dv.TimeField, UseTime, "")
		}
		views[o.ID] = dv
	}
	// source reads an object's searchSourceJSON: its index pattern and KQL query.
	source := func(o SavedObject) (string, *KQL, bool) {
		meta, _ := o.Attributes["kibanaSavedObjectMeta"].(map[string]any)
		s, _ := meta["searchSourceJSON"].(string)
		var src map[string]any
		if err := json.Unmarshal([]byte(s), &src); err != nil {
			bad(o, "searchSourceJSON: %v", err)
			return "", nil, false
		}
		if _, inline := src["index"]; inline {
			bad(o, "searchSourceJSON.index: refer to the index pattern through indexRefName and references")
		}
		name, _ := src["indexRefName"].(string)
		ref, ok := o.ref(name)
		if name == "" || !ok || ref.Type != "index-pattern" {
			bad(o, "searchSourceJSON.indexRefName does not resolve to an index-pattern reference")
			return "", nil, false
		}
		if fs, _ := src["filter"].([]any); len(fs) > 0 {
			bad(o, "filters are not supported; use the KQL query")
		}
		return ref.ID, planKQL(o, ref.ID, src["query"], use, bad), true
	}
	for _, o := range objs {
		switch o.Type {
		case "search":
			dv, kql, ok := source(o)
			if !ok {
				continue
			}
			q := Query{Object: o.Type + "/" + o.ID, Title: o.Title(), DataView: dv, KQL: kql}
			planSearch(o, &q, use, bad)
			queries = append(queries, q)
		case "visualization":
			dv, kql, ok := source(o)
			if !ok {
				continue
			}
			q := Query{Object: o.Type + "/" + o.ID, Title: o.Title(), DataView: dv, KQL: kql}
			if planVis(o, &q, func(field, u, dt string) { use(o, dv, field, u, dt) }, bad) {
				queries = append(queries, q)
			}
		case "dashboard":
			panels := dashboardPanels(o, bad)
			seen := map[string]bool{}
			for _, p := range panels {
				idx, _ := p["panelIndex"].(string)
				name, _ := p["panelRefName"].(string)
				grid, _ := p["gridData"].(map[string]any)
				if idx == "" || seen[idx] || grid == nil || grid["i"] != idx {
					bad(o, "panel %q: want a unique panelIndex and gridData with i equal to it", idx)
				}
				seen[idx] = true
				ref, ok := o.ref(name)
				if !ok || (ref.Type != "visualization" && ref.Type != "search") {
					bad(o, "panel %q: panelRefName %q names no visualization or search reference", idx, name)
				}
			}
		}
	}
	return views, uses, queries, errs
}

// planVis reads a legacy visualization's visState into q (the buckets in the order of
// its aggs, as OpenSearch Dashboards nests them) and reports whether it is usable.
func planVis(o SavedObject, q *Query, use func(field, u, dt string), bad func(SavedObject, string, ...any)) bool {
	s, _ := o.Attributes["visState"].(string)
	var vs struct {
		Title  string         `json:"title"`
		Type   string         `json:"type"`
		Params map[string]any `json:"params"`
		Aggs   []struct {
			ID      string         `json:"id"`
			Enabled bool           `json:"enabled"`
			Type    string         `json:"type"`
			Schema  string         `json:"schema"`
			Params  map[string]any `json:"params"`
		} `json:"aggs"`
	}
	if err := json.Unmarshal([]byte(s), &vs); err != nil {
		bad(o, "visState: %v", err)
		return false
	}
	if vs.Title != o.Title() {
		bad(o, "visState.title %q differs from the title %q", vs.Title, o.Title())
	}
	schemas, ok := osdVisSchemas[vs.Type]
	if !ok {
		bad(o, "visualization type %q is not one the tests translate", vs.Type)
		return false
	}
	if u, _ := o.Attributes["uiStateJSON"].(string); u != "" && !json.Valid([]byte(u)) {
		bad(o, "uiStateJSON is not JSON")
	}
	counts, metrics, ids := map[string]int{}, map[string]bool{}, map[string]bool{}
	for _, a := range vs.Aggs {
		if ids[a.ID] || a.ID == "" {
			bad(o, "agg id %q empty or used twice", a.ID)
		}
		ids[a.ID] = true
		if !a.Enabled {
			bad(o, "agg %s is disabled: remove it", a.ID)
			continue
		}
		max, ok := schemas[a.Schema]
		if !ok {
			bad(o, "agg %s: schema %q is not one of a %s", a.ID, a.Schema, vs.Type)
			continue
		}
		counts[a.Schema]++
		if max > 0 && counts[a.Schema] > max {
			bad(o, "more than %d aggs of schema %q", max, a.Schema)
		}
		isMetric := a.Schema == "metric" || a.Schema == "radius"
		field, _ := a.Params["field"].(string)
		switch {
		case a.Type == "count" && isMetric:
			metrics[a.ID] = true
		case a.Type == "terms" && !isMetric:
			use(field, UseTerms, "string")
			size, _ := a.Params["size"].(float64)
			b := Bucket{Op: "terms", Field: field, Size: int(size)}
			orderBy, _ := a.Params["orderBy"].(string)
			order, _ := a.Params["order"].(string)
			switch {
			case orderBy == "_key" && order == "asc":
			case metrics[orderBy] && order == "desc":
				b.ByCount = true
			default:
				bad(o, "agg %s: order by %q %q: want a count agg before it, desc, or _key asc", a.ID, orderBy, order)
			}
			if b.Size < 1 {
				bad(o, "agg %s: terms size must be >= 1", a.ID)
			}
			q.Buckets = append(q.Buckets, b)
		case a.Type == "date_histogram" && !isMetric:
			use(field, UseHistogram, "date")
			iv, _ := a.Params["interval"].(string)
			q.Buckets = append(q.Buckets, Bucket{Op: "date_histogram", Field: field, Interval: iv})
		default:
			bad(o, "agg %s: %s as %s is not translated by the tests", a.ID, a.Type, a.Schema)
		}
		if !isMetric && field == "" {
			bad(o, "agg %s: no field", a.ID)
		}
	}
	if len(metrics) == 0 {
		bad(o, "no count metric")
	}
	if len(q.Buckets) == 0 {
		bad(o, "no bucket aggregation")
	}
	// vislib charts draw the metrics their seriesParams name.
	if sp, ok := vs.Params["seriesParams"].([]any); ok {
		for _, p := range sp {
			m, _ := p.(map[string]any)
			d, _ := m["data"].(map[string]any)
			if id, _ := d["id"].(string); !metrics[id] {
				bad(o, "seriesParams names agg %q, not a count metric", id)
			}
		}
	} else if vs.Type != "pie" && vs.Type != "table" {
		bad(o, "%s without params.seriesParams", vs.Type)
	}
	return true
}
