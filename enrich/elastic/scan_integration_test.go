//go:build integration

package elastic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
)

// TestScanTiesAcrossShards: alerts that share their time (a rule writes a batch in the
// same millisecond) spread over several shards of several hidden indices, some without a
// time at all, are each read exactly once by a scan that pages through a point in time
// with small pages: the tiebreaker after the time is unique per alert on this server
// (Elasticsearch's _shard_doc, OpenSearch 2.x's _id).
func TestScanTiesAcrossShards(t *testing.T) {
	c := newClient(t, esURL(), nil)
	ctx := context.Background()
	prefix := fmt.Sprintf(".scan-ties-%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000))
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodDelete, "/"+prefix+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
	})
	settings := map[string]any{"settings": map[string]any{"index.hidden": true, "number_of_shards": 3, "number_of_replicas": 0},
		"mappings": map[string]any{"dynamic": false, "properties": map[string]any{
			"@timestamp": map[string]any{"type": "date"},
			"threat":     map[string]any{"properties": map[string]any{"technique": map[string]any{"properties": map[string]any{"id": map[string]any{"type": "keyword"}}}}},
		}}}
	var docs []sample.Doc
	times := []string{"2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.001Z"}
	for ix := range 2 {
		index := fmt.Sprintf("%s-%d", prefix, ix)
		b, _ := json.Marshal(settings)
		if code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+url.PathEscape(index), nil, b); err != nil || code != http.StatusOK {
			t.Fatalf("create %s: %v %s", index, err, resp)
		}
		for i := range 300 {
			src := map[string]any{"threat": map[string]any{"technique": map[string]any{"id": "T1021.002"}}}
			if i%10 != 0 { // one in ten has no time
				src["@timestamp"] = times[i%2]
			}
			docs = append(docs, sample.Doc{Index: index, ID: fmt.Sprintf("a%d-%03d", ix, i), Source: src})
		}
	}
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	store := elastic.NewStore(c, elastic.StoreOptions{Indices: []string{prefix + "-*"}}, testLogger(t))
	for _, stable := range []bool{true, false} {
		t.Run(fmt.Sprintf("stable=%v", stable), func(t *testing.T) {
			sc, err := store.Scan(ctx, runner.ScanSpec{Root: "attack_mappings", Generation: enrich.Generation{Number: 1, Hash: "h"},
				TechniqueFields: enrich.DefaultFields, PageSize: 37, Stable: stable})
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close(ctx)
			seen, first := map[string]int{}, map[string]bool{}
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("the scan does not end")
				}
				page, err := sc.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Alerts) == 0 {
					break
				}
				for _, a := range page.Alerts {
					seen[a.Index+"/"+a.ID]++
					if pages == 0 && !stable {
						first[a.Index+"/"+a.ID] = true
					}
				}
			}
			if len(seen) != len(docs) {
				t.Errorf("%d of %d alerts read", len(seen), len(docs))
			}
			for id, n := range seen {
				// A live scan whose first page (a plain search) is full goes on in a point
				// in time from the top: that page is read again, by design.
				if n != 1 && !(first[id] && n == 2) {
					t.Errorf("%s read %d times", id, n)
				}
			}
		})
	}
	// Patterns that match no index yet: nothing to read, no error.
	none := elastic.NewStore(c, elastic.StoreOptions{Indices: []string{prefix + "-none-*"}}, testLogger(t))
	sc, err := none.Scan(ctx, runner.ScanSpec{Root: "attack_mappings", TechniqueFields: enrich.DefaultFields, PageSize: 10, Stable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	if page, err := sc.Next(ctx); err != nil || len(page.Alerts) != 0 {
		t.Fatalf("scan over no index: %d alerts, %v", len(page.Alerts), err)
	}
}
