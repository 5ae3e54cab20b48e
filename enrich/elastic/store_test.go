package elastic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// fakeNode answers requests with handle and records the _bulk bodies.
type fakeNode struct {
	mu     sync.Mutex
	bulks  [][]string
	handle func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (f *fakeNode) client(t *testing.T) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/_bulk" {
			var lines []string
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			f.mu.Lock()
			f.bulks = append(f.bulks, lines)
			f.mu.Unlock()
		}
		f.handle(w, r, b)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(config.Elasticsearch{URLs: []string{srv.URL}, RequestTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func items(n int, size int) []runner.WriteItem {
	out := make([]runner.WriteItem, n)
	for i := range out {
		src := fmt.Sprintf(`{"id":%d,"pad":%q}`, i, strings.Repeat("x", size))
		out[i] = runner.WriteItem{Alert: &enrich.Alert{Index: "alerts-1", ID: fmt.Sprint(i), SeqNo: int64(i), PrimaryTerm: 1},
			Source: []byte(src)}
	}
	return out
}

// okItems answers every action of a bulk body with 201.
func okItems(body []byte) string {
	n := bytes.Count(body, []byte("\n")) / 2
	var b strings.Builder
	b.WriteString(`{"errors":false,"items":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"index":{"status":200,"result":"updated","_seq_no":%d,"_primary_term":1}}`, 100+i)
	}
	b.WriteString("]}")
	return b.String()
}

func TestWriteSortsItems(t *testing.T) {
	resp := `{"took":3,"errors":true,"items":[
	  {"index":{"_id":"0","status":200,"result":"updated","_seq_no":9,"_primary_term":1}},
	  {"index":{"_id":"1","status":409,"error":{"type":"version_conflict_engine_exception","reason":"version conflict"}}},
	  {"index":{"_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
	  {"index":{"_id":"3","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
	  {"index":{"_id":"4","status":404,"error":{"type":"index_not_found_exception","reason":"no such index"}}},
	  {"index":{"_id":"5","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [n]"}}},
	  {"index":{"_id":"6","status":403,"error":{"type":"cluster_block_exception","reason":"index [alerts-1] blocked by: [FORBIDDEN/8/index write (api)]"}}},
	  {"index":{"_id":"7","status":400,"error":{"type":"illegal_argument_exception","reason":"Limit of total fields [1700] has been exceeded"}}},
	  {"index":{"_id":"8","status":429,"error":{"type":"cluster_block_exception","reason":"index [alerts-1] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark]"}}}
	]}`
	f := &fakeNode{handle: func(w http.ResponseWriter, _ *http.Request, _ []byte) { io.WriteString(w, resp) }}
	s := NewStore(f.client(t), StoreOptions{Indices: []string{"alerts-*"}}, nil)
	res, err := s.Write(context.Background(), items(9, 10))
	if err != nil {
		t.Fatal(err)
	}
	want := []runner.ItemStatus{runner.ItemWritten, runner.ItemConflict, runner.ItemRetry, runner.ItemRetry, runner.ItemGone,
		runner.ItemFailed, runner.ItemIndexFailed, runner.ItemIndexFailed, runner.ItemIndexFailed}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("item %d: %s (%d %s), want %s", i, r.Status, r.Code, r.Reason, want[i])
		}
	}
	if res[0].SeqNo != 9 || res[0].PrimaryTerm != 1 {
		t.Errorf("written version %+v", res[0])
	}
	// Each action is a whole-document index guarded by the version read.
	if l := f.bulks[0][2]; l != `{"index":{"_index":"alerts-1","_id":"1","if_seq_no":1,"if_primary_term":1}}` {
		t.Errorf("action line %s", l)
	}
	if l := f.bulks[0][3]; !strings.HasPrefix(l, `{"id":1,`) {
		t.Errorf("document line %s", l)
	}
}

func TestWriteBoundsAndSplits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     int // the node answers 413 above this many bytes
		breaker   bool
		maxBytes  int
		wantFirst int // items in the first request that reached the node unrefused
	}{
		{"bytes bound", 1 << 30, false, 3000, 2},
		{"413 splits", 2500, false, 1 << 30, 2},
		{"circuit breaker splits", 2500, true, 1 << 30, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeNode{}
			refused := 0
			f.handle = func(w http.ResponseWriter, _ *http.Request, body []byte) {
				if len(body) > tc.limit {
					refused++
					if tc.breaker {
						w.WriteHeader(http.StatusTooManyRequests)
						io.WriteString(w, `{"error":{"type":"circuit_breaking_exception","reason":"[parent] Data too large"},"status":429}`)
						return
					}
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					return
				}
				io.WriteString(w, okItems(body))
			}
			s := NewStore(f.client(t), StoreOptions{MaxRequestBytes: tc.maxBytes, MaxRequestItems: 1000}, nil)
			res, err := s.Write(context.Background(), items(8, 1000))
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if r.Status != runner.ItemWritten {
					t.Fatalf("item %d: %+v", i, r)
				}
			}
			if (refused > 0) != (tc.limit < 1<<30) {
				t.Fatalf("refused %d requests", refused)
			}
			last := f.bulks[len(f.bulks)-1]
			if got := len(last) / 2; got != tc.wantFirst {
				t.Fatalf("last request has %d items, want %d", got, tc.wantFirst)
			}
		})
	}
	t.Run("one item too large", func(t *testing.T) {
		f := &fakeNode{handle: func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}}
		s := NewStore(f.client(t), StoreOptions{}, nil)
		res, err := s.Write(context.Background(), items(2, 10))
		if err != nil || res[0].Status != runner.ItemFailed || !strings.Contains(res[0].Reason, "too large") {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestWholeRequestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   error
		says   string
	}{
		{401, `{"error":{"type":"security_exception","reason":"unable to authenticate with provided credentials"},"status":401}`, ErrRefused, "authentication failed"},
		{403, `{"error":{"root_cause":[{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [reader]"}],"type":"security_exception","reason":"x"},"status":403}`, ErrRefused, "indices:data/write/bulk"},
		{400, `{"error":{"type":"parse_exception","reason":"bad"},"status":400}`, ErrRefused, "parse_exception"},
		{503, `{"error":{"type":"unavailable","reason":"x"}}`, ErrUnavailable, "503"},
		{429, `{"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}`, ErrUnavailable, "429"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f := &fakeNode{handle: func(w http.ResponseWriter, _ *http.Request, _ []byte) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}}
			s := NewStore(f.client(t), StoreOptions{}, nil)
			_, err := s.Write(context.Background(), items(3, 10))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.want, tc.says)
			}
		})
	}
}

func TestParseBulkRejectsMismatch(t *testing.T) {
	for _, body := range []string{`{"items":[]}`, `not json`, `{"items":[{"index":{"status":200},"update":{"status":200}}]}`} {
		if _, err := parseBulk([]byte(body), 1); !errors.Is(err, errBulkResponse) {
			t.Errorf("%s: err = %v", body, err)
		}
	}
}

// TestPendingQuery: the query selects alerts that carry a technique, are not done for the
// generation (or wait for a stage), are not quarantined by it, lie in the time bounds and
// outside the excluded indices.
func TestPendingQuery(t *testing.T) {
	s := NewStore(nil, StoreOptions{TimeField: "@timestamp", Query: map[string]any{"term": map[string]any{"x": 1}}}, nil)
	since := time.UnixMilli(1700000000000)
	q := s.pendingQuery(runner.ScanSpec{Root: "am", Generation: enrich.Generation{Number: 4, Hash: "h"}, Since: since,
		Exclude: []string{"bad"}, TechniqueFields: []enrich.Field{{Path: "threat.technique.id", Kind: enrich.FieldID},
			{Path: "tags", Kind: enrich.FieldTag}}})
	b, _ := json.Marshal(q)
	for _, want := range []string{
		`{"exists":{"field":"threat.technique.id"}}`,
		`{"prefix":{"tags":{"case_insensitive":true,"value":"attack.t"}}}`,
		`{"term":{"x":1}}`,
		`{"range":{"@timestamp":{"format":"epoch_millis","gte":1700000000000}}}`,
		`{"terms":{"_index":["bad"]}}`,
		`{"range":{"am.quarantine.generation":{"gte":4}}}`,
		`{"bool":{"must_not":{"range":{"am.ruleset.generation":{"gte":4}}}}}`,
		`{"term":{"am.ruleset.generation":4}},{"exists":{"field":"am.pending_stages"}}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("query lacks %s:\n%s", want, b)
		}
	}
	q = s.pendingQuery(runner.ScanSpec{Root: "am", Generation: enrich.Generation{Number: 4}, Until: since})
	b, _ = json.Marshal(q)
	if !strings.Contains(string(b), `{"range":{"@timestamp":{"format":"epoch_millis","lte":1700000000000}}},{"bool":{"must_not":{"exists":{"field":"@timestamp"}}}}`) {
		t.Errorf("backfill bound: %s", b)
	}
}

func TestRootMappingCoversSchema(t *testing.T) {
	got := map[string]string{}
	leafTypes("", RootMapping(), got)
	for _, p := range enrich.SchemaPaths() {
		if got[p] == "" {
			t.Errorf("schema field %s not mapped", p)
		}
	}
	if RootMapping()["dynamic"] != false {
		t.Error("root object must be dynamic: false")
	}
}
