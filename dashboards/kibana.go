package dashboards

// Reading Kibana saved-objects NDJSON and turning every data view, saved search and Lens
// visualization into the field uses and Elasticsearch queries the tests check, and every
// URL field format of a data view into the Discover link it renders (links.go).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// SavedObject is one line of a saved-objects export.
type SavedObject struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Attributes map[string]any `json:"attributes"`
	References []Reference    `json:"references"`
	// Migration versions: Kibana 7.x (and OpenSearch Dashboards) keep one per type in
	// migrationVersion; Kibana 8 writes typeMigrationVersion and coreMigrationVersion.
	MigrationVersion     map[string]string `json:"migrationVersion"`
	TypeMigrationVersion string            `json:"typeMigrationVersion"`
	CoreMigrationVersion string            `json:"coreMigrationVersion"`
}

// Reference is a saved-object reference.
type Reference struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// Title returns the object's title (or name for data views).
func (o SavedObject) Title() string {
	if t, _ := o.Attributes["title"].(string); t != "" && o.Type != "index-pattern" {
		return t
	}
	n, _ := o.Attributes["name"].(string)
	return n
}

func (o SavedObject) ref(name string) (Reference, bool) {
	for _, r := range o.References {
		if r.Name == name {
			return r, true
		}
	}
	return Reference{}, false
}

// ParseNDJSON reads an export: one object per line; the export summary line is skipped.
func ParseNDJSON(r io.Reader) ([]SavedObject, error) {
	var out []SavedObject
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, ok := raw["exportedCount"]; ok {
			continue
		}
		var o SavedObject
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if o.ID == "" || o.Type == "" || o.Attributes == nil {
			return nil, fmt.Errorf("line %d: id, type and attributes are required", n)
		}
		out = append(out, o)
	}
	return out, sc.Err()
}

// DataView is an index-pattern object.
type DataView struct {
	ID, Title, TimeField string
	AllowHidden          bool
	Labels               map[string]string      // fieldAttrs custom labels
	Formats              map[string]FieldFormat // fieldFormatMap
	Links                []Link                 // the URL formats, each checked to open a saved search of the file
}

// Patterns returns the index patterns of the data view's title.
func (d DataView) Patterns() []string { return strings.Split(d.Title, ",") }

// Matches reports whether an index name matches one of the data view's patterns.
func (d DataView) Matches(index string) bool {
	for _, p := range d.Patterns() {
		if ok, _ := path.Match(strings.TrimSpace(p), index); ok {
			return true
		}
	}
	return false
}

// Field uses: what a field must support.
const (
	UseTime      = "time field"             // date
	UseTerms     = "terms"                  // aggregatable, of the column's dataType
	UseHistogram = "date_histogram"         // date
	UseQuery     = "KQL query"              // mapped
	UseColumn    = "saved search column"    // mapped
	UseLabel     = "data view field attr"   // mapped
	UseFormat    = "data view field format" // mapped
	UseSort      = "saved search sort"      // mapped, sortable (not text)
)

// FieldUse is one reference to a field by a saved object.
type FieldUse struct {
	Object, DataView, Field, Use string
	DataType                     string // for terms: Lens dataType (string, number, boolean, ip, date)
}

// Bucket is one bucketed Lens column, outermost first.
type Bucket struct {
	Op, Field, Interval string
	Size                int
	ByCount             bool
}

// Query is what one saved search or Lens layer asks of Elasticsearch.
type Query struct {
	Object, Title, DataView string
	KQL                     *KQL
	Buckets                 []Bucket
	Columns                 []string    // saved searches: the columns that must show values
	Sort                    [][2]string // saved searches: field and direction, in order
}

// Body returns the Elasticsearch search body for the query.
func (q Query) Body() map[string]any {
	body := map[string]any{"query": q.KQL.ES(), "track_total_hits": true}
	if len(q.Buckets) == 0 {
		body["size"] = 10
		if len(q.Sort) > 0 {
			var sort []any
			for _, s := range q.Sort {
				sort = append(sort, map[string]any{s[0]: map[string]any{"order": s[1]}})
			}
			body["sort"] = sort
		}
		if len(q.Columns) > 0 {
			body["fields"] = q.Columns
			body["_source"] = false
		}
		return body
	}
	body["size"] = 0
	var inner map[string]any
	for i := len(q.Buckets) - 1; i >= 0; i-- {
		b := q.Buckets[i]
		var agg map[string]any
		switch b.Op {
		case "terms":
			order := map[string]any{"_key": "asc"}
			if b.ByCount {
				order = map[string]any{"_count": "desc"}
			}
			agg = map[string]any{"terms": map[string]any{"field": b.Field, "size": b.Size, "order": order}}
		case "date_histogram":
			iv := b.Interval
			if iv == "" || iv == "auto" {
				iv = "30m" // Kibana derives "auto" from the time range; any fixed interval proves the field
			}
			agg = map[string]any{"date_histogram": map[string]any{"field": b.Field, "fixed_interval": iv, "min_doc_count": 1}}
		}
		if inner != nil {
			agg["aggs"] = map[string]any{fmt.Sprintf("b%d", i+1): inner}
		}
		inner = agg
	}
	body["aggs"] = map[string]any{"b0": inner}
	return body
}

// SearchDataViews maps the ID of every saved search to its data view's ID (what a link
// to the search opens).
func SearchDataViews(objs []SavedObject) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		if ref, ok := o.ref("kibanaSavedObjectMeta.searchSourceJSON.index"); ok && o.Type == "search" && ref.Type == "index-pattern" {
			out[o.ID] = ref.ID
		}
	}
	return out
}

// Plan walks the saved objects and returns their data views, every field use and every
// query, with an error for each structural problem: unresolved references, Lens
// accessors that name no column, operations or KQL outside what the tests translate.
func Plan(objs []SavedObject) (map[string]DataView, []FieldUse, []Query, []error) {
	var errs []error
	bad := func(o SavedObject, f string, a ...any) {
		errs = append(errs, fmt.Errorf("%s %q: %s", o.Type, o.ID, fmt.Sprintf(f, a...)))
	}
	checkReferences(objs, bad)
	views := map[string]DataView{}
	for _, o := range objs {
		if o.Type != "index-pattern" {
			continue
		}
		dv := DataView{ID: o.ID}
		dv.Title, _ = o.Attributes["title"].(string)
		dv.TimeField, _ = o.Attributes["timeFieldName"].(string)
		dv.AllowHidden, _ = o.Attributes["allowHidden"].(bool)
		if dv.Title == "" {
			bad(o, "no title")
		}
		if s, _ := o.Attributes["fieldAttrs"].(string); s != "" {
			var attrs map[string]struct {
				CustomLabel string `json:"customLabel"`
			}
			if err := json.Unmarshal([]byte(s), &attrs); err != nil {
				bad(o, "fieldAttrs: %v", err)
			}
			dv.Labels = map[string]string{}
			for f, a := range attrs {
				dv.Labels[f] = a.CustomLabel
			}
		}
		if s, _ := o.Attributes["fieldFormatMap"].(string); s != "" {
			if err := json.Unmarshal([]byte(s), &dv.Formats); err != nil {
				bad(o, "fieldFormatMap: %v", err)
			}
		}
		views[o.ID] = dv
	}
	searches := SearchDataViews(objs)
	var uses []FieldUse
	var queries []Query
	use := func(o SavedObject, dv, field, u, dt string) {
		uses = append(uses, FieldUse{Object: o.Type + "/" + o.ID, DataView: dv, Field: field, Use: u, DataType: dt})
	}
	kql := func(o SavedObject, dv string, q any) *KQL { return planKQL(o, dv, q, use, bad) }
	for _, o := range objs {
		switch o.Type {
		case "index-pattern":
			dv := views[o.ID]
			if dv.TimeField != "" {
				use(o, o.ID, dv.TimeField, UseTime, "")
			}
			for f, l := range dv.Labels {
				if strings.TrimSpace(l) == "" {
					bad(o, "field %s: empty custom label", f)
				}
				use(o, o.ID, f, UseLabel, "")
			}
			fields := make([]string, 0, len(dv.Formats))
			for f := range dv.Formats {
				fields = append(fields, f)
			}
			sort.Strings(fields)
			for _, f := range fields {
				use(o, o.ID, f, UseFormat, "")
				l, err := planLink(o.ID, f, dv.Formats[f], searches)
				if err != nil {
					bad(o, "field format of %s: %v", f, err)
					continue
				}
				dv.Links = append(dv.Links, l)
				for _, qf := range l.query.KQL.Fields() {
					use(o, l.Target, qf, UseQuery, "")
				}
			}
			views[o.ID] = dv
		case "search":
			ref, ok := o.ref("kibanaSavedObjectMeta.searchSourceJSON.index")
			meta, _ := o.Attributes["kibanaSavedObjectMeta"].(map[string]any)
			s, _ := meta["searchSourceJSON"].(string)
			var src map[string]any
			if err := json.Unmarshal([]byte(s), &src); err != nil {
				bad(o, "searchSourceJSON: %v", err)
				continue
			}
			if !ok || ref.Type != "index-pattern" || src["indexRefName"] != ref.Name {
				bad(o, "searchSourceJSON.indexRefName does not resolve to a data view reference")
				continue
			}
			if fs, _ := src["filter"].([]any); len(fs) > 0 {
				bad(o, "filters are not supported; use the KQL query")
			}
			q := Query{Object: o.Type + "/" + o.ID, Title: o.Title(), DataView: ref.ID, KQL: kql(o, ref.ID, src["query"])}
			planSearch(o, &q, use, bad)
			queries = append(queries, q)
		case "lens":
			queries = append(queries, planLens(o, use, kql, bad)...)
		case "dashboard":
			panels := dashboardPanels(o, bad)
			for _, p := range panels {
				idx, _ := p["panelIndex"].(string)
				name, _ := p["panelRefName"].(string)
				typ, _ := p["type"].(string)
				ref, ok := o.ref(idx + ":" + name)
				if !ok || ref.Type != typ {
					bad(o, "panel %q (%s) has no reference %q of that type", idx, typ, idx+":"+name)
				}
			}
		default:
			bad(o, "unexpected saved object type")
		}
	}
	return views, uses, queries, errs
}

// checkReferences reports objects of the same type and ID, and every reference that
// does not resolve to an object of the referenced type in objs or whose name the object
// uses twice.
func checkReferences(objs []SavedObject, bad func(SavedObject, string, ...any)) {
	byID := map[string]bool{}
	for _, o := range objs {
		key := o.Type + "/" + o.ID
		if byID[key] {
			bad(o, "duplicate id")
		}
		byID[key] = true
	}
	for _, o := range objs {
		names := map[string]bool{}
		for _, r := range o.References {
			if names[r.Name] {
				bad(o, "reference name %q used twice", r.Name)
			}
			names[r.Name] = true
			if !byID[r.Type+"/"+r.ID] {
				bad(o, "reference %q points to %s %q, not in the file", r.Name, r.Type, r.ID)
			}
		}
	}
}

// planKQL parses the query of a searchSourceJSON ({"language": "kuery", "query": …}) of
// an object on data view dv, a field use of each field it names; an empty KQL when it
// cannot.
func planKQL(o SavedObject, dv string, q any, use func(SavedObject, string, string, string, string),
	bad func(SavedObject, string, ...any)) *KQL {
	m, _ := q.(map[string]any)
	lang, _ := m["language"].(string)
	text, _ := m["query"].(string)
	if lang != "kuery" {
		bad(o, "query language %q: only kuery (KQL, DQL in OpenSearch Dashboards) is supported", lang)
		return &KQL{}
	}
	n, err := ParseKQL(text)
	if err != nil {
		bad(o, "%v", err)
		return &KQL{}
	}
	for _, f := range n.Fields() {
		use(o, dv, f, UseQuery, "")
	}
	return n
}

// planSearch reads a saved search's columns and sort into q, a field use of each on the
// search's data view (q.DataView).
func planSearch(o SavedObject, q *Query, use func(SavedObject, string, string, string, string),
	bad func(SavedObject, string, ...any)) {
	cols, _ := o.Attributes["columns"].([]any)
	for _, c := range cols {
		f, _ := c.(string)
		use(o, q.DataView, f, UseColumn, "")
		q.Columns = append(q.Columns, f)
	}
	if len(q.Columns) == 0 {
		bad(o, "no columns")
	}
	sorts, _ := o.Attributes["sort"].([]any)
	for _, s := range sorts {
		pair, _ := s.([]any)
		f, dir := "", ""
		if len(pair) == 2 {
			f, _ = pair[0].(string)
			dir, _ = pair[1].(string)
		}
		if f == "" || (dir != "asc" && dir != "desc") {
			bad(o, "sort %v: want [field, asc|desc]", s)
			continue
		}
		use(o, q.DataView, f, UseSort, "")
		q.Sort = append(q.Sort, [2]string{f, dir})
	}
}

// dashboardPanels returns a dashboard's panels (panelsJSON), reporting them when they
// are not JSON (none then) or there are none.
func dashboardPanels(o SavedObject, bad func(SavedObject, string, ...any)) []map[string]any {
	s, _ := o.Attributes["panelsJSON"].(string)
	var panels []map[string]any
	if err := json.Unmarshal([]byte(s), &panels); err != nil {
		bad(o, "panelsJSON: %v", err)
		return nil
	}
	if len(panels) == 0 {
		bad(o, "no panels")
	}
	return panels
}

// planLink checks one field format: a URL format rendered as a link ("a") whose
// template, expanded with ProbeValue, opens a saved search of the file in Discover with
// a KQL query that holds the value as a quoted clause value.
func planLink(dv, field string, f FieldFormat, searches map[string]string) (Link, error) {
	if f.ID != "url" {
		return Link{}, fmt.Errorf("format %q: only url formats (links the tests follow) are expected", f.ID)
	}
	l := Link{DataView: dv, Field: field}
	l.URLTemplate, _ = f.Params["urlTemplate"].(string)
	l.LabelTemplate, _ = f.Params["labelTemplate"].(string)
	if t, _ := f.Params["type"].(string); t != "" && t != "a" {
		return l, fmt.Errorf("url format type %q: want a (link)", t)
	}
	if l.URLTemplate == "" {
		return l, fmt.Errorf("url format without urlTemplate")
	}
	q, err := l.Resolve(ProbeValue, searches)
	if err != nil {
		return l, err
	}
	holds := false
	var walk func(n *KQL)
	walk = func(n *KQL) {
		if n.Op == "clause" && n.Quoted && n.Value == ProbeValue {
			holds = true
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(q.KQL)
	if !holds {
		return l, fmt.Errorf("the query %q does not hold the value %q as a quoted clause value", q.Title, ProbeValue)
	}
	l.SavedSearch, l.Target, l.query = strings.TrimPrefix(q.Object, "search/"), q.DataView, q
	return l, nil
}

func planLens(o SavedObject, use func(SavedObject, string, string, string, string),
	kql func(SavedObject, string, any) *KQL, bad func(SavedObject, string, ...any)) []Query {
	state, _ := o.Attributes["state"].(map[string]any)
	if state == nil {
		bad(o, "no state")
		return nil
	}
	if fs, _ := state["filters"].([]any); len(fs) > 0 {
		bad(o, "filters are not supported; use the KQL query")
	}
	dss, _ := state["datasourceStates"].(map[string]any)
	fb, _ := dss["formBased"].(map[string]any)
	layers, _ := fb["layers"].(map[string]any)
	if len(layers) == 0 {
		bad(o, "no datasourceStates.formBased layers")
		return nil
	}
	allCols := map[string]bool{}
	var out []Query
	ids := make([]string, 0, len(layers))
	for id := range layers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, layerID := range ids {
		layer, _ := layers[layerID].(map[string]any)
		ref, ok := o.ref("indexpattern-datasource-layer-" + layerID)
		if !ok || ref.Type != "index-pattern" {
			bad(o, "layer %q has no data view reference", layerID)
			continue
		}
		q := Query{Object: o.Type + "/" + o.ID, Title: o.Title(), DataView: ref.ID, KQL: kql(o, ref.ID, state["query"])}
		cols, _ := layer["columns"].(map[string]any)
		order, _ := layer["columnOrder"].([]any)
		if len(order) != len(cols) || len(cols) == 0 {
			bad(o, "layer %q: columnOrder must list every column", layerID)
		}
		metrics := map[string]bool{}
		for _, c := range order {
			id, _ := c.(string)
			col, _ := cols[id].(map[string]any)
			if col == nil {
				bad(o, "layer %q: columnOrder names missing column %q", layerID, id)
				continue
			}
			allCols[id] = true
			op, _ := col["operationType"].(string)
			field, _ := col["sourceField"].(string)
			dt, _ := col["dataType"].(string)
			params, _ := col["params"].(map[string]any)
			if f, ok := col["filter"]; ok && f != nil {
				bad(o, "column %q: column filters are not supported", id)
			}
			switch op {
			case "count":
				if field != "___records___" {
					bad(o, "column %q: count of a field is not supported", id)
				}
				metrics[id] = true
			case "terms":
				use(o, ref.ID, field, UseTerms, dt)
				size, _ := params["size"].(float64)
				b := Bucket{Op: op, Field: field, Size: int(size)}
				ob, _ := params["orderBy"].(map[string]any)
				switch ob["type"] {
				case "column":
					cid, _ := ob["columnId"].(string)
					if cc, _ := cols[cid].(map[string]any); cc == nil || cc["operationType"] != "count" {
						bad(o, "column %q: orderBy must be a count column", id)
					}
					b.ByCount = true
				case "alphabetical":
				default:
					bad(o, "column %q: unsupported orderBy %v", id, ob)
				}
				if b.Size < 1 {
					bad(o, "column %q: terms size must be >= 1", id)
				}
				q.Buckets = append(q.Buckets, b)
			case "date_histogram":
				use(o, ref.ID, field, UseHistogram, dt)
				iv, _ := params["interval"].(string)
				q.Buckets = append(q.Buckets, Bucket{Op: op, Field: field, Interval: iv})
			default:
				bad(o, "column %q: operation %q is not translated by the tests", id, op)
			}
		}
		if len(metrics) == 0 {
			bad(o, "layer %q has no count column", layerID)
		}
		out = append(out, q)
	}
	// The visualization's accessors must name columns of the layers.
	viz, _ := state["visualization"].(map[string]any)
	for _, a := range accessors(o.Attributes["visualizationType"], viz) {
		if !allCols[a] {
			bad(o, "visualization accessor %q names no column", a)
		}
	}
	if len(accessors(o.Attributes["visualizationType"], viz)) == 0 {
		bad(o, "visualization %v has no accessors", o.Attributes["visualizationType"])
	}
	return out
}

// accessors returns the column IDs a Lens visualization state uses.
func accessors(vizType any, viz map[string]any) []string {
	var out []string
	add := func(v any) {
		switch x := v.(type) {
		case string:
			if x != "" {
				out = append(out, x)
			}
		case []any:
			for _, y := range x {
				if s, ok := y.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	layers, _ := viz["layers"].([]any)
	switch vizType {
	case "lnsXY":
		for _, l := range layers {
			m, _ := l.(map[string]any)
			add(m["accessors"])
			add(m["xAccessor"])
			add(m["splitAccessor"])
		}
	case "lnsPie":
		for _, l := range layers {
			m, _ := l.(map[string]any)
			add(m["primaryGroups"])
			add(m["metrics"])
		}
	case "lnsDatatable":
		cols, _ := viz["columns"].([]any)
		for _, c := range cols {
			m, _ := c.(map[string]any)
			add(m["columnId"])
		}
	case "lnsMetric":
		add(viz["metricAccessor"])
		add(viz["breakdownByAccessor"])
	}
	return out
}
