package main

// The compact ATT&CK shape's figures, with every shared CTID file loaded next to the
// built-in rules: the bytes enrichment adds to a T1021.002 alert (compact next to full),
// the store size of the enriched alert index after a force-merge next to before
// enrichment, and `run --once` alerts/s.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

var (
	detailN      = flag.Int("detail-n", 20000, "Kibana alerts for the compact-shape figures (store size, run --once with all frameworks); 0 skips them")
	detailRounds = flag.Int("detail-rounds", 3, "rounds of run --once, built-in rules vs all frameworks, order alternated (median of their ratios)")
	detailFullN  = flag.Int("detail-full-n", 2000, "Kibana alerts enriched in the full shape, for the store-size comparison (0 skips it)")
)

// smbRule names the sample's T1021.002 Kibana rule.
const smbRule = "Potential Lateral Tool Transfer via SMB Share"

// detailSize prints the three figures of the compact shape; all is the ruleset of every
// shared CTID file (loaded here when nil).
func detailSize(ctx context.Context, c *elastic.Client, builtin, all *rules.Ruleset) error {
	start := time.Now()
	if all == nil {
		files := sharedFiles()
		if len(files) == 0 {
			fmt.Printf("compact shape: no CTID files in %s, skipped\n\n", *shared)
			return nil
		}
		var err error
		if all, err = rules.Load(ctx, rules.LoadConfig{Sources: files}); err != nil {
			return err
		}
	}
	sides := []struct {
		name   string
		rs     *rules.Ruleset
		target string
	}{
		{"built-in rules", builtin, "target <= 2 KB compact; was 7 KB"},
		{"all frameworks", all, "target <= 6 KB compact; was 28 KB"},
	}

	// 1. Bytes added to one T1021.002 alert, as stored by Elasticsearch after the
	// runner's write (GET _source before and after).
	space := sample.KibanaSpace("benchsize")
	defer deleteSpace(ctx, c, space)
	defer deleteIndex(ctx, c, ".bench-"+string(space))
	doc, err := smbAlert(space)
	if err != nil {
		return err
	}
	var before int
	added := map[string]map[string]int{}
	for _, s := range sides {
		added[s.name] = map[string]int{}
		for _, detail := range []string{enrich.DetailCompact, enrich.DetailFull} {
			b, n, err := storedAdded(ctx, c, space, doc, s.rs, detail)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", s.name, detail, err)
			}
			before, added[s.name][detail] = b, n
		}
	}
	fmt.Printf("compact vs full ATT&CK shape: bytes added to the stored T1021.002 Kibana alert %s (%d bytes before; KB = 1024 bytes):\n", doc.ID, before)
	for _, s := range sides {
		a := added[s.name]
		fmt.Printf("  added, %-25s %8.2f KB compact, %6.2f KB full (%s)\n", s.name,
			float64(a[enrich.DetailCompact])/1024, float64(a[enrich.DetailFull])/1024, s.target)
	}
	fmt.Println()

	// 2. and 3. The n Kibana alerts: the store after force-merge, and run --once rates.
	space = sample.KibanaSpace("benchdetail")
	docs := kibanaDocs(space, *detailN)
	defer deleteSpace(ctx, c, space)
	defer deleteIndex(ctx, c, ".bench-"+string(space))
	if err := reset(ctx, c, space, docs); err != nil {
		return err
	}
	base, err := storeSize(ctx, c, space.Backing(), "")
	if err != nil {
		return err
	}
	// The _source dominates the store; Elasticsearch's other codec compresses it over
	// larger blocks, so the same figure with it says how much of the ratio is the codec's.
	const bestCodec = "best_compression"
	baseBest, err := storeSize(ctx, c, space.Backing(), bestCodec)
	if err != nil {
		return err
	}
	type storeFig struct {
		label, target string
		bytes, base   int64
	}
	var stores, variants []storeFig
	var ratios, bRates, aRates []float64
	var rounds []string
	for r := 0; r < max(*detailRounds, 1); r++ {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		var rate [2]float64
		for _, i := range order {
			s := sides[i]
			if rate[i], err = runEnricher(ctx, c, space, docs, s.rs, enrich.DetailCompact); err != nil {
				return err
			}
			if r == 0 {
				size, err := storeSize(ctx, c, space.Backing(), "")
				if err != nil {
					return err
				}
				target := ""
				if s.rs == all {
					target = " (target <= 2; was 42)"
				}
				stores = append(stores, storeFig{s.name + ", compact", target, size, base})
				if s.rs == all {
					if size, err = storeSize(ctx, c, space.Backing(), bestCodec); err != nil {
						return err
					}
					stores = append(stores, storeFig{"all frameworks, " + bestCodec, " (compact; before also " + bestCodec + ")", size, baseBest})
					if *detailVariants {
						sizes, err := variantStores(ctx, c, space.Backing())
						if err != nil {
							return err
						}
						for i, size := range sizes {
							variants = append(variants, storeFig{shapeVariants[i].label, "", size, base})
						}
					}
				}
			}
		}
		ratios, bRates, aRates = append(ratios, rate[1]/rate[0]), append(bRates, rate[0]), append(aRates, rate[1])
		rounds = append(rounds, fmt.Sprintf("  round %d: built-in rules %7.0f alerts/s, all frameworks %7.0f alerts/s, ratio %.2f\n", r+1, rate[0], rate[1], rate[1]/rate[0]))
	}
	// The full shape over fewer alerts: all frameworks write about 30 KB per alert.
	if *detailFullN > 0 {
		fdocs := docs[:min(*detailFullN, len(docs))]
		if err := reset(ctx, c, space, fdocs); err != nil {
			return err
		}
		fbase, err := storeSize(ctx, c, space.Backing(), "")
		if err != nil {
			return err
		}
		for _, s := range sides {
			rate, err := runEnricher(ctx, c, space, fdocs, s.rs, enrich.DetailFull)
			if err != nil {
				return err
			}
			size, err := storeSize(ctx, c, space.Backing(), "")
			if err != nil {
				return err
			}
			stores = append(stores, storeFig{fmt.Sprintf("%s, full, %d alerts", s.name, len(fdocs)),
				fmt.Sprintf(" (run --once %.0f alerts/s)", rate), size, fbase})
		}
	}
	// The text the compact shape leaves off alerts: the mapping detail index, written
	// once per ruleset.
	detailIdx, detailState := "bench-mapping-details", ".bench-details-state"
	defer deleteIndex(ctx, c, detailIdx)
	defer deleteIndex(ctx, c, detailState)
	deleteIndex(ctx, c, detailIdx)
	deleteIndex(ctx, c, detailState)
	pubStart := time.Now()
	details := elastic.NewDetails(c, detailIdx, elastic.NewState(c, detailState, []string{space.Alias()}, "bench"), nil)
	ndocs := 0
	for _, s := range sides {
		res, err := details.Publish(ctx, enrich.NewAttackStage(s.rs, enrich.AttackOptions{InheritParent: true, Detail: enrich.DetailCompact}))
		if err != nil {
			return err
		}
		ndocs += res.Written + res.Existing
	}
	pubTook := time.Since(pubStart)
	detailBytes, err := storeSize(ctx, c, detailIdx, "")
	if err != nil {
		return err
	}

	fmt.Printf("store after force-merge, %d Kibana alerts (before enrichment %.1f MB):\n", len(docs), float64(base)/1e6)
	for _, f := range stores {
		fmt.Printf("  %-32s %8.1f MB = %5.2fx before%s\n", f.label, float64(f.bytes)/1e6, float64(f.bytes)/float64(f.base), f.target)
	}
	fmt.Printf("  mapping detail index             %8.1f MB, %d documents of both rulesets (once per ruleset; published in %.1f s)\n\n",
		float64(detailBytes)/1e6, ndocs, pubTook.Seconds())
	if len(variants) > 0 {
		fmt.Println("other shapes of the compact object, all frameworks, the same alerts rewritten (store after force-merge vs before enrichment):")
		for _, f := range variants {
			fmt.Printf("  %-48s %8.1f MB = %5.2fx before\n", f.label, float64(f.bytes)/1e6, float64(f.bytes)/float64(f.base))
		}
		fmt.Println()
	}

	for _, l := range rounds {
		fmt.Print(l)
	}
	fmt.Printf("run --once, %d Kibana alerts, compact shape (%d rounds, order alternated):\n", len(docs), len(ratios))
	fmt.Printf("  built-in rules, median           %8.0f alerts/s\n", median(bRates))
	fmt.Printf("  all frameworks, median           %8.0f alerts/s\n", median(aRates))
	fmt.Printf("  ratio, median of rounds          %8.2f (target >= 0.80; was 0.14)\n", median(ratios))
	fmt.Printf("  (compact-shape figures took %.0f s)\n\n", time.Since(start).Seconds())
	return nil
}

// smbAlert is the first T1021.002 Kibana alert of the sample that carries no malformed
// technique values.
func smbAlert(space sample.KibanaSpace) (sample.Doc, error) {
	for _, d := range kibanaDocs(space, 200) {
		_, malformed := d.Source["threat"]
		_, params := d.Source["kibana.alert.rule.parameters"]
		if d.Source["kibana.alert.rule.name"] == smbRule && !malformed && params {
			return d, nil
		}
	}
	return sample.Doc{}, fmt.Errorf("no T1021.002 Kibana alert in the sample")
}

// storedAdded loads doc alone into a fresh space, runs the runner once with the ATT&CK
// stage writing the given shape, and returns the size of its stored _source before and
// how many bytes the write added. The same alert through the offline write path (the
// runner's processor, splicing the root into the stored bytes) must add as many, give or
// take the length of the generation number and of enriched_at.
func storedAdded(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, doc sample.Doc, rs *rules.Ruleset, detail string) (int, int, error) {
	if err := reset(ctx, c, space, []sample.Doc{doc}); err != nil {
		return 0, 0, err
	}
	before, err := getSource(ctx, c, space.Backing(), doc.ID)
	if err != nil {
		return 0, 0, err
	}
	m := metrics.New(prometheus.NewRegistry())
	r, err := newRunner(c, m, []string{space.Alias()}, rs, detail, "bench-"+string(space), runnerOpts())
	if err != nil {
		return 0, 0, err
	}
	res, err := r.RunOnce(ctx)
	if err != nil {
		return 0, 0, err
	}
	if res.Written != 1 {
		return 0, 0, fmt.Errorf("enricher wrote %d of 1 alert", res.Written)
	}
	after, err := getSource(ctx, c, space.Backing(), doc.ID)
	if err != nil {
		return 0, 0, err
	}
	if !json.Valid(after) || len(after) <= len(before) {
		return 0, 0, fmt.Errorf("stored alert after enrichment: %d bytes, %d before", len(after), len(before))
	}
	p, err := pipeline(rs, nil, detail)
	if err != nil {
		return 0, 0, err
	}
	off := runner.NewOffline(p.WithGeneration(1), runner.Options{MaxAttempts: 1}, nil, nil)
	srcs, err := off.Enrich(ctx, []*enrich.Alert{{ID: doc.ID, Index: space.Backing(), Raw: before}})
	if err != nil {
		return 0, 0, err
	}
	if d := len(srcs[0]) - len(after); d < -32 || d > 32 {
		fmt.Printf("  note: %s, %s: the offline write path adds %d bytes, Elasticsearch stored %d more\n",
			detail, rs.Version(), len(srcs[0])-len(before), len(after)-len(before))
	}
	return len(before), len(after) - len(before), nil
}

// getSource returns a document's _source as Elasticsearch stores it.
func getSource(ctx context.Context, c *elastic.Client, index, id string) ([]byte, error) {
	code, body, err := c.Do(ctx, "other", http.MethodGet, "/"+url.PathEscape(index)+"/_source/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s/_source/%s: status %d: %.300s", index, id, code, body)
	}
	return body, nil
}

// storeSize returns the size of an index's store after a force-merge to one segment.
// Elasticsearch keeps the old versions of updated documents (soft deletes) until the
// shard's retention lease moves past them, up to 30 s later, and a merge keeps what is
// retained; so the figure is taken on a clone (hard links to the same segments, with a
// fresh lease) force-merged to one segment: the index as it is at rest once the lease
// moves. A deleted document left after the merge is an error.
//
// codec, when not empty, is the clone's index.codec (the merge rewrites every segment
// with it).
func storeSize(ctx context.Context, c *elastic.Client, index, codec string) (int64, error) {
	q := url.Values{"expand_wildcards": {"all"}}
	src, dst := "/"+url.PathEscape(index), "/bench-store-copy"
	do := func(what, method, path string, q url.Values, body string) ([]byte, error) {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		code, resp, err := c.Do(ctx, "other", method, path, q, b)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d: %.300s", code, resp)
		}
		if err != nil {
			return nil, fmt.Errorf("store size of %s: %s: %w", index, what, err)
		}
		return resp, nil
	}
	if _, err := do("refresh", http.MethodPost, src+"/_refresh", q, ""); err != nil {
		return 0, err
	}
	deleteIndex(ctx, c, "bench-store-copy")
	defer deleteIndex(ctx, c, "bench-store-copy")
	if _, err := do("block writes", http.MethodPut, src+"/_settings", q, `{"index.blocks.write":true}`); err != nil {
		return 0, err
	}
	defer do("unblock writes", http.MethodPut, src+"/_settings", q, `{"index.blocks.write":null}`)
	settings := map[string]any{"index.number_of_replicas": 0, "index.blocks.write": nil}
	if codec != "" {
		settings["index.codec"] = codec
	}
	clone, _ := json.Marshal(map[string]any{"settings": settings})
	if _, err := do("clone", http.MethodPost, src+"/_clone/bench-store-copy", nil, string(clone)); err != nil {
		return 0, err
	}
	if _, err := do("wait for the clone", http.MethodGet, "/_cluster/health/bench-store-copy",
		url.Values{"wait_for_status": {"green"}, "timeout": {"60s"}, "expand_wildcards": {"all"}}, ""); err != nil {
		return 0, err
	}
	if _, err := do("force-merge", http.MethodPost, dst+"/_forcemerge", url.Values{"max_num_segments": {"1"}, "expand_wildcards": {"all"}}, ""); err != nil {
		return 0, err
	}
	body, err := do("stats", http.MethodGet, dst+"/_stats/store,docs", q, "")
	if err != nil {
		return 0, err
	}
	var st struct {
		All struct {
			Primaries struct {
				Store struct {
					Size int64 `json:"size_in_bytes"`
				} `json:"store"`
				Docs struct {
					Count   int64 `json:"count"`
					Deleted int64 `json:"deleted"`
				} `json:"docs"`
			} `json:"primaries"`
		} `json:"_all"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return 0, fmt.Errorf("store size of %s: stats: %w", index, err)
	}
	if *verbose {
		if body, err := do("disk usage", http.MethodPost, dst+"/_disk_usage", url.Values{"run_expensive_tasks": {"true"}, "expand_wildcards": {"all"}}, ""); err == nil {
			printDiskUsage(body)
		}
	}
	p := st.All.Primaries
	if p.Docs.Deleted > 0 {
		return 0, fmt.Errorf("store size of %s: after force-merge %d documents, %d deleted ones kept", index, p.Docs.Count, p.Docs.Deleted)
	}
	return p.Store.Size, nil
}

func deleteIndex(ctx context.Context, c *elastic.Client, index string) {
	c.Do(ctx, "other", http.MethodDelete, "/"+url.PathEscape(index), url.Values{"expand_wildcards": {"all"}, "ignore_unavailable": {"true"}}, nil)
}

// printDiskUsage prints the fields that take most of an index's store (-v).
func printDiskUsage(body []byte) {
	type size struct {
		Total int64 `json:"total_in_bytes"`
	}
	var du map[string]struct {
		Store  int64           `json:"store_size_in_bytes"`
		Fields map[string]size `json:"fields"`
	}
	if json.Unmarshal(body, &du) != nil {
		return
	}
	for _, ix := range du {
		if ix.Fields == nil {
			continue
		}
		names := make([]string, 0, len(ix.Fields))
		for name := range ix.Fields {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool { return ix.Fields[names[i]].Total > ix.Fields[names[j]].Total })
		fmt.Printf("    store %.2f MB:", float64(ix.Store)/1e6)
		for _, name := range names[:min(len(names), 6)] {
			fmt.Printf(" %s %.2f MB", name, float64(ix.Fields[name].Total)/1e6)
		}
		fmt.Println()
	}
}
