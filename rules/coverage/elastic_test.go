package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
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
			"f3":{"buckets":[{"key":"T1003.001","doc_count":0}]}}}`)
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

func fakeClient(t *testing.T, f *fakeES) *elasticsearch.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestAlertCounts(t *testing.T) {
	f := &fakeES{}
	es := fakeClient(t, f)
	got, err := AlertCounts(context.Background(), es, AlertQuery{Since: "now-30d"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"T1021": 5, "T1021.002": 3}
	if len(got) != len(want) || got["T1021"] != 5 || got["T1021.002"] != 3 {
		t.Errorf("counts = %v, want %v", got, want)
	}
	if len(f.requests) != 2 {
		t.Fatalf("requests = %v", f.requests)
	}
	for _, r := range f.requests {
		if !strings.Contains(r, "/.alerts-security.alerts-*/_search") || !strings.Contains(r, "expand_wildcards=open%2Chidden") {
			t.Errorf("request %s: want the alerts pattern with hidden indices", r)
		}
	}
	for _, field := range AlertTechniqueFields {
		if !strings.Contains(f.bodies[0], `"field":"`+field+`"`) {
			t.Errorf("first request lacks a terms aggregation on %s: %s", field, f.bodies[0])
		}
	}
	// Both spellings of T1021 are looked up; the non-ID is not.
	if !strings.Contains(f.bodies[1], `"t1021"`) || strings.Contains(f.bodies[1], "not-an-id") || !strings.Contains(f.bodies[1], `"gte":"now-30d"`) {
		t.Errorf("second request: %s", f.bodies[1])
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
			if f.requests[0] != "PUT /enricher-coverage?" || !strings.HasPrefix(f.requests[1], "PUT /enricher-coverage/_mapping") {
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
