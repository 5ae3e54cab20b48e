package elastic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/rules"
)

// TestPassRetriesPerItem runs one pass against a fake node whose first bulk answers
// updated / 429 / 400: the 429 item is resent alone after a backoff, the 400 item is
// counted failed with its reason, and the rest of the batch goes on.
func TestPassRetriesPerItem(t *testing.T) {
	var mu sync.Mutex
	var bulks [][]string
	searches := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "/_mapping/field/"):
			io.WriteString(w, `{"alerts-1":{"mappings":{"attack_mappings.ruleset.hash":{"full_name":"attack_mappings.ruleset.hash"}}}}`)
		case strings.HasSuffix(r.URL.Path, "/_field_caps"):
			io.WriteString(w, `{"indices":["alerts-1","alerts-2"],"fields":{"rule.mitre.id":{"keyword":{"type":"keyword"}},"tags":{"text":{"type":"text"},"unmapped":{"type":"unmapped"}},"threat.technique.id":{"unmapped":{"type":"unmapped"}}}}`)
		case strings.HasSuffix(r.URL.Path, "/_pit") && r.Method == http.MethodPost:
			io.WriteString(w, `{"id":"pit-1"}`)
		case r.URL.Path == "/_pit":
			io.WriteString(w, `{"succeeded":true}`)
		case r.URL.Path == "/_search":
			searches++
			if searches > 1 {
				io.WriteString(w, `{"hits":{"total":{"value":0},"hits":[]}}`)
				return
			}
			var req struct {
				DocValueFields []string `json:"docvalue_fields"`
				Source         any      `json:"_source"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			if strings.Join(req.DocValueFields, ",") != "rule.mitre.id" {
				t.Errorf("docvalue_fields %v, want the one field mapped keyword everywhere", req.DocValueFields)
			}
			// tags is text in one index and unmapped in another: from _source; every field
			// the field capabilities do not map anywhere is not read at all.
			if inc, _ := req.Source.(map[string]any)["includes"].([]any); len(inc) != 1 || inc[0] != "tags" {
				t.Errorf("_source includes %v, want [tags]", req.Source)
			}
			io.WriteString(w, `{"pit_id":"pit-1","hits":{"total":{"value":3},"hits":[
			  {"_index":"alerts-1","_id":"a","_seq_no":1,"_primary_term":1,"fields":{"rule.mitre.id":["T1021.002"]},"sort":[1]},
			  {"_index":"alerts-1","_id":"b","_seq_no":2,"_primary_term":1,"fields":{"rule.mitre.id":["T1021.002"]},"sort":[2]},
			  {"_index":"alerts-1","_id":"c","_seq_no":3,"_primary_term":1,"_source":{"tags":["attack.t1021.002"]},"sort":[3]}]},
			  "aggregations":{"oldest":{"value":1700000000000}}}`)
		case r.URL.Path == "/_bulk":
			b, _ := io.ReadAll(r.Body)
			var lines []string
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			bulks = append(bulks, lines)
			if len(bulks) == 1 {
				io.WriteString(w, `{"errors":true,"items":[
				  {"update":{"_id":"a","status":200,"result":"updated"}},
				  {"update":{"_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
				  {"update":{"_id":"c","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}`)
				return
			}
			io.WriteString(w, `{"errors":false,"items":[{"update":{"_id":"b","status":200,"result":"updated"}}]}`)
		case strings.HasSuffix(r.URL.Path, "/_refresh"):
			io.WriteString(w, `{"_shards":{"total":1,"successful":1,"failed":0}}`)
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	m := metrics.New(prometheus.NewRegistry())
	c, err := NewClient(config.Elasticsearch{URLs: []string{srv.URL}, RequestTimeout: 5 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{})
	p, err := enrich.NewPipeline([]enrich.PipelineStage{{Stage: attack, Required: true}}, "attack_mappings", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	en := NewEnricher(c, p, attack, Options{Indices: []string{"alerts-*"}, MaxRetries: 3, InstallMappings: true}, m, slog.New(slog.DiscardHandler))
	var slept []time.Duration
	en.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }

	res, err := en.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 2 || res.Failed != 1 || res.Pending != 3 {
		t.Fatalf("result %+v, want 2 written, 1 failed of 3 pending", res)
	}
	if len(bulks) != 2 || len(bulks[1]) != 2 || !strings.Contains(bulks[1][0], `"_id":"b"`) {
		t.Fatalf("the retry must resend only the 429 item: %v", bulks)
	}
	if len(slept) != 1 || slept[0] <= 0 {
		t.Fatalf("no backoff before the retry: %v", slept)
	}
	for result, want := range map[string]float64{"updated": 2, "retry": 1, "failed": 1} {
		if got := testutil.ToFloat64(m.BulkItems.WithLabelValues(result)); got != want {
			t.Errorf("bulk items %s = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.AlertsProcessed.WithLabelValues("failed")); got != 1 {
		t.Errorf("failed alerts = %v", got)
	}
	if testutil.ToFloat64(m.Lag) <= 0 {
		t.Error("lag not set from the oldest pending alert")
	}
	var doc struct {
		Doc map[string]json.RawMessage `json:"doc"`
	}
	if err := json.Unmarshal([]byte(bulks[0][1]), &doc); err != nil || len(doc.Doc) != 1 || doc.Doc["attack_mappings"] == nil {
		t.Fatalf("the partial update must hold only the root object: %s (%v)", bulks[0][1], err)
	}
}
