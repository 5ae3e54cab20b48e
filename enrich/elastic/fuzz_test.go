package elastic

import (
	"testing"
	"unicode/utf8"

	"github.com/enricher-dev/enricher/enrich/runner"
)

// FuzzParseBulk feeds arbitrary _bulk responses to the parser: it never panics, and an
// answer it accepts has exactly one result per write, each sorted into a known status
// with a bounded reason.
func FuzzParseBulk(f *testing.F) {
	f.Add([]byte(`{"errors":false,"items":[{"index":{"_id":"a","status":200,"result":"updated","_seq_no":3,"_primary_term":1}}]}`), 1)
	f.Add([]byte(`{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"x"}}},{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"Limit of total fields [1000] has been exceeded"}}}]}`), 2)
	f.Add([]byte(`{"items":[{"index":{},"update":{}}]}`), 1)
	f.Add([]byte(`{"items":null}`), 0)
	f.Add([]byte(`[`), 1)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		out, err := parseBulk(body, n)
		if err != nil {
			return
		}
		if len(out) != n {
			t.Fatalf("%d results for %d writes", len(out), n)
		}
		for i, r := range out {
			switch r.Status {
			case runner.ItemWritten, runner.ItemConflict, runner.ItemGone, runner.ItemIndexFailed, runner.ItemRetry, runner.ItemFailed:
			default:
				t.Fatalf("item %d: status %v", i, r.Status)
			}
			if len(r.Reason) > 1100 {
				t.Fatalf("item %d: reason of %d bytes", i, len(r.Reason))
			}
			_ = utf8.ValidString(r.Reason)
		}
	})
}
