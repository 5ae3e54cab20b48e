package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeES answers _search and _bulk like Elasticsearch, recording requests.
type fakeES struct {
	mu       sync.Mutex
	requests []string
	bodies   []string
	bulk     func(body string) string
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	f.bodies = append(f.bodies, string(body))
	f.mu.Unlock()
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/_field_caps"):
		// tags is mapped as text with a keyword subfield, as dynamic mapping does.
		io.WriteString(w, `{"fields":{
			"kibana.alert.rule.threat.technique.id":{"keyword":{"aggregatable":true}},
			"kibana.alert.rule.threat.technique.subtechnique.id":{"keyword":{"aggregatable":true}},
			"threat.technique.id":{"keyword":{"aggregatable":true}},
			"threat.technique.subtechnique.id":{"keyword":{"aggregatable":true}},
			"tags":{"text":{"aggregatable":false}},"tags.keyword":{"keyword":{"aggregatable":true}},
			"message":{"text":{"aggregatable":false}}}}`)
	case strings.HasSuffix(r.URL.Path, "/_search") && bytes.Contains(body, []byte(`"filters"`)):
		var req struct {
			Aggs struct {
				Techniques struct {
					Filters struct {
						Filters map[string]json.RawMessage `json:"filters"`
					} `json:"filters"`
				} `json:"techniques"`
			} `json:"aggs"`
		}
		_ = json.Unmarshal(body, &req)
		buckets := map[string]any{}
		for id := range req.Aggs.Techniques.Filters.Filters {
			n := map[string]int{"T1021": 5, "T1021.002": 3}[id]
			buckets[id] = map[string]int{"doc_count": n}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"_shards": map[string]int{"failed": 0}, "aggregations": map[string]any{"techniques": map[string]any{"buckets": buckets}}})
	case strings.HasSuffix(r.URL.Path, "/_search"):
		io.WriteString(w, `{"_shards":{"failed":0},"aggregations":{
			"f0":{"buckets":[{"key":"T1021","doc_count":4}]},
			"f1":{"buckets":[{"key":"T1021.002","doc_count":3}]},
			"f2":{"buckets":[{"key":"t1021","doc_count":1},{"key":"not-an-id","doc_count":1}]},
			"f3":{"buckets":[{"key":"T1003.001","doc_count":0}]},
			"f4":{"buckets":[{"key":"attack.t1021.002","doc_count":2},{"key":"attack.lateral_movement","doc_count":2}]}}}`)
	case r.URL.Path == "/_bulk":
		io.WriteString(w, f.bulk(string(body)))
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/_mapping"):
		io.WriteString(w, `{"acknowledged":true}`)
	case r.Method == http.MethodPut:
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"type":"resource_already_exists_exception"},"status":400}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// httpClient is a Client over plain HTTP (the daemon's client in the integration test).
type httpClient struct{ base string }

func (c httpClient) Do(ctx context.Context, _, method, path string, q url.Values, body []byte) (int, []byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

func fakeClient(t *testing.T, f *fakeES) Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return httpClient{srv.URL}
}

func TestAlertCounts(t *testing.T) {
	f := &fakeES{}
	fields := append(append([]AlertField(nil), DefaultAlertFields...),
		AlertField{Path: "tags", Technique: func(v string) (string, bool) {
			if id, ok := strings.CutPrefix(v, "attack."); ok && strings.HasPrefix(id, "t") {
				return strings.ToUpper(id), true
			}
			return "", false
		}},
		AlertField{Path: "message"})
	got, skipped, err := AlertCounts(context.Background(), fakeClient(t, f), AlertQuery{Since: "now-30d", Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"T1021": 5, "T1021.002": 3}
	if len(got) != len(want) || got["T1021"] != 5 || got["T1021.002"] != 3 {
		t.Errorf("counts = %v, want %v", got, want)
	}
	if len(skipped) != 1 || skipped[0] != "message" {
		t.Errorf("skipped %v, want [message]: mapped, but not as a keyword", skipped)
	}
	if len(f.requests) != 3 || !strings.Contains(f.requests[0], "/_field_caps") {
		t.Fatalf("requests = %v", f.requests)
	}
	for _, r := range f.requests {
		if !strings.Contains(r, "/.alerts-security.alerts-*/") || !strings.Contains(r, "expand_wildcards=open%2Chidden") {
			t.Errorf("request %s: want the alerts pattern with hidden indices", r)
		}
	}
	for _, field := range DefaultAlertFields {
		if !strings.Contains(f.bodies[1], `"field":"`+field.Path+`"`) {
			t.Errorf("first search lacks a terms aggregation on %s: %s", field.Path, f.bodies[1])
		}
	}
	if !strings.Contains(f.bodies[1], `"field":"tags.keyword"`) || strings.Contains(f.bodies[1], `"field":"message"`) {
		t.Errorf("tags must be aggregated on its keyword subfield, message not at all: %s", f.bodies[1])
	}
	// Both spellings of T1021 are looked up, the tag under its own field; the non-ID and
	// the tactic tag are not.
	if !strings.Contains(f.bodies[2], `"t1021"`) || !strings.Contains(f.bodies[2], `"tags.keyword":["attack.t1021.002"]`) ||
		strings.Contains(f.bodies[2], "not-an-id") || strings.Contains(f.bodies[2], "lateral_movement") || !strings.Contains(f.bodies[2], `"gte":"now-30d"`) {
		t.Errorf("second search: %s", f.bodies[2])
	}
}

func TestWriteIndex(t *testing.T) {
	rep := build(t, scan(t, "testdata/rules"))
	tests := []struct {
		name    string
		bulk    func(string) string
		wantErr string
	}{
		{"all indexed", func(body string) string {
			n := strings.Count(body, "\n") / 2
			return `{"errors":false,"items":[` + strings.TrimSuffix(strings.Repeat(`{"index":{"status":201}},`, n), ",") + `]}`
		}, ""},
		{"one rejected", func(body string) string {
			n := strings.Count(body, "\n")/2 - 1
			return `{"errors":true,"items":[{"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},` +
				strings.TrimSuffix(strings.Repeat(`{"index":{"status":201}},`, n), ",") + `]}`
		}, "1 with status 429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeES{bulk: tt.bulk}
			n, err := WriteIndex(context.Background(), fakeClient(t, f), rep, WriteOptions{BatchSize: 3})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "":
				var be *BulkError
				if !errors.As(err, &be) || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrElasticsearch) {
					t.Fatalf("err = %v, want BulkError with %q", err, tt.wantErr)
				}
				return
			}
			if n != len(rep.Techniques) {
				t.Errorf("written %d, want %d", n, len(rep.Techniques))
			}
			if !strings.HasPrefix(f.requests[0], "PUT /enricher-coverage?") || !strings.HasPrefix(f.requests[1], "PUT /enricher-coverage/_mapping") {
				t.Errorf("requests = %v: want create index, then put mapping when it exists", f.requests)
			}
			var meta struct {
				Index struct {
					Index string `json:"_index"`
					ID    string `json:"_id"`
				} `json:"index"`
			}
			first := strings.SplitN(f.bodies[2], "\n", 3)
			if err := json.Unmarshal([]byte(first[0]), &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Index.Index != DefaultIndex || meta.Index.ID != "test-run:"+rep.Techniques[0].ID {
				t.Errorf("bulk meta = %+v", meta)
			}
		})
	}
}

// TestDocumentsMatchMapping checks every field a document can carry is in IndexMapping
// (the index is strict) with the right type family.
func TestDocumentsMatchMapping(t *testing.T) {
	rep := build(t, scan(t, "testdata/rules"))
	n := int64(3)
	rep.Techniques[0].Alerts = &n
	fields := mappedFields(t)
	for _, d := range Documents(rep) {
		b, _ := json.Marshal(d)
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		var check func(prefix string, m map[string]any)
		check = func(prefix string, m map[string]any) {
			for k, v := range m {
				if sub, ok := v.(map[string]any); ok {
					check(prefix+k+".", sub)
					continue
				}
				if _, ok := fields[prefix+k]; !ok {
					t.Errorf("document field %s%s is not mapped", prefix, k)
				}
			}
		}
		check("", doc)
	}
	if fields["technique.id"] != "keyword" || fields["gaps"] != "keyword" || fields["@timestamp"] != "date" {
		t.Errorf("mapping types: %v", fields)
	}
}
