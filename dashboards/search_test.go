//go:build integration

package dashboards

// What the Kibana tests (dashboards_test.go, on Elasticsearch) and the OpenSearch
// Dashboards tests (opensearch_test.go, on OpenSearch) share: running a data view's (index
// pattern's) field uses and queries against the server's test indices.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
)

// request sends one request to the server under test and returns the status and the body
// of its answer: harness.es (Elasticsearch) or osHarness.do (OpenSearch).
type request func(method, path string, body []byte) (int, []byte, error)

// send is a request to base+path, a JSON body when there is one, with basic auth when
// user is set.
func send(base, user, password, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// coveredIndices returns the test indices a data view (index pattern) covers: the
// enriched alert indices its patterns match, and details, this run's mapping detail
// index, for the data view over the default one (config.DefaultDetailsIndex).
func coveredIndices(t *testing.T, dv DataView, alerts []string, details string) []string {
	t.Helper()
	var out []string
	for _, ix := range alerts {
		if dv.Matches(ix) {
			out = append(out, ix)
		}
	}
	for _, p := range dv.Patterns() {
		if strings.TrimSpace(p) == config.DefaultDetailsIndex {
			out = append(out, details)
		}
	}
	if len(out) == 0 {
		t.Fatalf("data view %s (%q) matches none of the enriched test indices %v nor %s", dv.ID, dv.Title, alerts, config.DefaultDetailsIndex)
	}
	return out
}

// searchPath is the path of a search on indices of the data view: hidden indices
// included where the data view allows them.
func searchPath(dv DataView, indices []string) string {
	path := "/" + strings.Join(indices, ",") + "/_search"
	if dv.AllowHidden {
		path += "?expand_wildcards=open,hidden"
	}
	return path
}

// search POSTs the search body to path and decodes the answer into v, which it returns
// too (for messages); the test fails unless the server answers 200 with JSON.
func search(t *testing.T, do request, path string, body []byte, v any) []byte {
	t.Helper()
	code, resp, err := do(http.MethodPost, path, body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST %s %s: %d %v %.500s", path, body, code, err, resp)
	}
	if err := json.Unmarshal(resp, v); err != nil {
		t.Fatal(err)
	}
	return resp
}

// searchResult is what the tests read of a search's answer: the hit count, the hits'
// fields (requested with "fields") and the aggregations.
type searchResult struct {
	Hits struct {
		Total struct {
			Value int `json:"value"`
		} `json:"total"`
		Hits []struct {
			Fields map[string][]any `json:"fields"`
		} `json:"hits"`
	} `json:"hits"`
	Aggregations map[string]json.RawMessage `json:"aggregations"`
}

// usesByView groups field uses by their data view's ID.
func usesByView(uses []FieldUse) map[string][]FieldUse {
	out := map[string][]FieldUse{}
	for _, u := range uses {
		out[u.DataView] = append(out[u.DataView], u)
	}
	return out
}

// checkFieldUses checks the field uses us of one data view against the mapping of the
// test indices it covers: every field mapped, with one type across them (no Kibana
// "conflict") that fits the use (fitting), and some document there holding a value of it.
func checkFieldUses(t *testing.T, do request, dv DataView, indices []string, us []FieldUse) {
	t.Helper()
	set := map[string]bool{}
	for _, u := range us {
		set[u.Field] = true
	}
	names := make([]string, 0, len(set))
	for f := range set {
		names = append(names, f)
	}
	sort.Strings(names)
	path := "/" + strings.Join(indices, ",") + "/_mapping/field/" + strings.Join(names, ",")
	if dv.AllowHidden {
		path += "?expand_wildcards=open,hidden"
	}
	code, body, err := do(http.MethodGet, path, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v %.300s", path, code, err, body)
	}
	var got map[string]struct {
		Mappings map[string]struct {
			Mapping map[string]struct {
				Type      string `json:"type"`
				Index     *bool  `json:"index"`
				DocValues *bool  `json:"doc_values"`
			} `json:"mapping"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	types := map[string]map[fieldMapping][]string{} // field -> mapping -> indices
	for ix, m := range got {
		for f, fm := range m.Mappings {
			mp := fm.Mapping[f[strings.LastIndex(f, ".")+1:]]
			if types[f] == nil {
				types[f] = map[fieldMapping][]string{}
			}
			key := fieldMapping{Type: mp.Type, NoIndex: mp.Index != nil && !*mp.Index, NoDocValues: mp.DocValues != nil && !*mp.DocValues}
			types[f][key] = append(types[f][key], ix)
		}
	}
	for _, u := range us {
		ts := types[u.Field]
		switch {
		case len(ts) == 0:
			t.Errorf("%s: field %s (%s) is not mapped in any index of data view %s (%v)", u.Object, u.Field, u.Use, dv.ID, indices)
		case len(ts) > 1:
			t.Errorf("%s: field %s has conflicting mappings across data view %s (%v): %v", u.Object, u.Field, dv.ID, indices, ts)
		default:
			for m := range ts {
				if !fitting(u, m) {
					t.Errorf("%s: field %s is %+v, which does not fit its use as %s %s", u.Object, u.Field, m, u.Use, u.DataType)
				}
			}
		}
	}
	for _, f := range names {
		if len(types[f]) != 1 {
			continue // reported above
		}
		var m fieldMapping
		for k := range types[f] {
			m = k
		}
		if n := valuesOf(t, do, searchPath(dv, indices), f, m); n == 0 {
			var objs []string
			for _, u := range us {
				if u.Field == f {
					objs = append(objs, u.Object+" ("+u.Use+")")
				}
			}
			t.Errorf("field %s has no value in any document of data view %s (%v): the daemon does not write it in its default shape, nor does the alert carry it; used by %v", f, dv.ID, indices, objs)
		}
	}
}

// valuesOf counts the documents the search path covers that hold a value of the field:
// an exists query where the field is indexed, else a scan of the documents' values
// (fields of "index": false, such as the details' references, cannot be queried).
func valuesOf(t *testing.T, do request, path, field string, m fieldMapping) int {
	t.Helper()
	body := map[string]any{"size": 0, "track_total_hits": true, "query": map[string]any{"exists": map[string]any{"field": field}}}
	if !m.searchable() {
		body = map[string]any{"size": 10000, "_source": false, "fields": []string{field}}
	}
	b, _ := json.Marshal(body)
	var r searchResult
	search(t, do, path, b, &r)
	if m.searchable() {
		return r.Hits.Total.Value
	}
	n := 0
	for _, hit := range r.Hits.Hits {
		if len(hit.Fields[field]) > 0 {
			n++
		}
	}
	return n
}

// checkQueryReturnsData runs the search body of the saved search or visualization q on
// path and checks it returns hits, a value of every column of q in the first hits and a
// non-empty bucket at every level of its buckets. It returns the hit count.
func checkQueryReturnsData(t *testing.T, do request, path string, q Query, body map[string]any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	var r searchResult
	resp := search(t, do, path, b, &r)
	if r.Hits.Total.Value == 0 {
		t.Fatalf("no alerts match %s on %s", b, path)
	}
	for _, c := range q.Columns {
		found := false
		for _, hit := range r.Hits.Hits {
			if len(hit.Fields[c]) > 0 {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("column %s has no value in the first %d hits", c, len(r.Hits.Hits))
		}
	}
	if len(q.Buckets) > 0 {
		if depth := bucketDepth(r.Aggregations["b0"], 0); depth < len(q.Buckets) {
			t.Errorf("only %d of %d bucket levels are non-empty for %s\n%.800s", depth, len(q.Buckets), b, resp)
		}
	}
	return r.Hits.Total.Value
}

// bucketDepth returns how many nested levels (b<level>) hold a non-empty bucket.
func bucketDepth(raw json.RawMessage, level int) int {
	var agg struct {
		Buckets []map[string]json.RawMessage `json:"buckets"`
	}
	if json.Unmarshal(raw, &agg) != nil {
		return 0
	}
	best := 0
	for _, b := range agg.Buckets {
		var n int
		_ = json.Unmarshal(b["doc_count"], &n)
		if n == 0 {
			continue
		}
		d := 1
		if sub, ok := b[fmt.Sprintf("b%d", level+1)]; ok {
			d += bucketDepth(sub, level+1)
		}
		if d > best {
			best = d
		}
	}
	return best
}

// fieldMapping is what the tests read of a leaf field's mapping (comparable, so that
// indices mapping a field alike are one entry).
type fieldMapping struct {
	Type                 string
	NoIndex, NoDocValues bool // "index": false, "doc_values": false
}

// searchable reports whether queries (exists among them) can run on the field.
func (m fieldMapping) searchable() bool { return !m.NoIndex }

func fitting(use FieldUse, m fieldMapping) bool {
	typ := m.Type
	numeric := map[string]bool{"long": true, "integer": true, "short": true, "byte": true, "double": true,
		"float": true, "half_float": true, "scaled_float": true, "unsigned_long": true}
	switch use.Use {
	case UseTime, UseHistogram:
		return typ == "date" || typ == "date_nanos"
	case UseTerms:
		switch use.DataType {
		case "string":
			return typ == "keyword" || typ == "constant_keyword"
		case "boolean":
			return typ == "boolean"
		case "number":
			return numeric[typ]
		case "ip":
			return typ == "ip"
		case "date":
			return typ == "date" || typ == "date_nanos"
		}
		return false
	case UseSort:
		return typ != "object" && typ != "nested" && typ != "text" && !m.NoDocValues
	case UseQuery:
		return typ != "object" && typ != "nested" && m.searchable()
	}
	return typ != "object" && typ != "nested"
}
