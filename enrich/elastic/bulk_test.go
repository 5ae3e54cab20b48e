package elastic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
)

// fakeES answers _bulk with canned item results and records the request lines.
func fakeES(t *testing.T, status int, items string, got *[]string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		if got != nil {
			b, _ := io.ReadAll(r.Body)
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				*got = append(*got, sc.Text())
			}
		}
		w.WriteHeader(status)
		io.WriteString(w, items)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(config.Elasticsearch{URLs: []string{srv.URL}, RequestTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBulkUpdateSortsItems(t *testing.T) {
	items := `{"took":3,"errors":true,"items":[
	  {"update":{"_id":"1","status":200,"result":"updated"}},
	  {"update":{"_id":"2","status":200,"result":"noop"}},
	  {"update":{"_id":"3","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[3]: version conflict, required seqNo [5], primary term [1]. current document has seqNo [6] and primary term [1]"}}},
	  {"update":{"_id":"4","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
	  {"update":{"_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
	  {"update":{"_id":"6","status":404,"error":{"type":"document_missing_exception","reason":"[6]: document missing"}}},
	  {"update":{"_id":"7","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [attack_mappings.enriched_at]"}}}
	]}`
	var lines []string
	c := fakeES(t, 200, items, &lines)
	var in []BulkItem
	for i := 1; i <= 7; i++ {
		id := string(rune('0' + i))
		in = append(in, BulkItem{
			Alert: &enrich.Alert{ID: id, Index: ".internal.alerts-security.alerts-default-000001", SeqNo: 5, PrimaryTerm: 1},
			Doc:   map[string]any{"attack_mappings": map[string]any{"status": "enriched"}},
		})
	}
	res, err := c.BulkUpdate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := []ItemStatus{ItemUpdated, ItemNoop, ItemConflict, ItemRetry, ItemRetry, ItemNotFound, ItemFailed}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("item %d: %s, want %s", i+1, r.Status, want[i])
		}
	}
	if !strings.Contains(res[6].Reason, "document_parsing_exception") {
		t.Errorf("failed item's reason not kept: %q", res[6].Reason)
	}
	// Every update is guarded and partial.
	if len(lines) != 14 {
		t.Fatalf("%d request lines", len(lines))
	}
	var meta map[string]map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &meta); err != nil {
		t.Fatal(err)
	}
	if u := meta["update"]; u["if_seq_no"] != 5.0 || u["if_primary_term"] != 1.0 || u["_id"] != "1" {
		t.Fatalf("update not guarded: %s", lines[0])
	}
	if lines[1] != `{"doc":{"attack_mappings":{"status":"enriched"}}}` {
		t.Fatalf("doc line: %s", lines[1])
	}
}

func TestBulkUpdateWholeRequestFailures(t *testing.T) {
	for _, tc := range []struct {
		status    int
		retryable bool
	}{{429, true}, {502, true}, {503, true}, {400, false}, {401, false}} {
		c := fakeES(t, tc.status, `{"error":{"type":"x","reason":"y"},"status":`+http.StatusText(tc.status)+`}`, nil)
		_, err := c.BulkUpdate(context.Background(), []BulkItem{{Alert: &enrich.Alert{ID: "1", Index: "i"}, Doc: map[string]any{"a": 1}}})
		if err == nil {
			t.Fatalf("status %d: no error", tc.status)
		}
		if errors.Is(err, ErrUnavailable) != tc.retryable {
			t.Errorf("status %d: retryable = %v, want %v (%v)", tc.status, !tc.retryable, tc.retryable, err)
		}
	}
	// Nothing listening: retryable.
	c, _ := NewClient(config.Elasticsearch{URLs: []string{"http://127.0.0.1:1"}, RequestTimeout: time.Second}, nil)
	if _, err := c.BulkUpdate(context.Background(), []BulkItem{{Alert: &enrich.Alert{ID: "1", Index: "i"}, Doc: map[string]any{}}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestQueryBody(t *testing.T) {
	q := Query{Root: "attack_mappings", Hash: "abc", TechniqueFields: []enrich.Field{{Path: "threat.technique.id", Kind: enrich.FieldID}, {Path: "tags", Kind: enrich.FieldTag}}}
	b, _ := json.Marshal(q.Body())
	want := `{"bool":{"filter":[{"bool":{"minimum_should_match":1,"should":[{"exists":{"field":"threat.technique.id"}},{"prefix":{"tags":{"case_insensitive":true,"value":"attack.t"}}}]}}],"minimum_should_match":1,"should":[{"bool":{"must_not":{"term":{"attack_mappings.ruleset.hash":"abc"}}}},{"exists":{"field":"attack_mappings.pending_stages"}}]}}`
	if string(b) != want {
		t.Fatalf("query\n got %s\nwant %s", b, want)
	}
}
