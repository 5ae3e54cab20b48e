package main

// The run loop's figures: live latency while a backfill runs, backfill throughput,
// conflicts with an analyst's bulk status change, and the cost of an idle poll over a
// large history next to a small one.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

var (
	histN    = flag.Int("backfill-n", 200000, "alerts in the history the backfill works through (0 skips the run-loop figures)")
	idleBig  = flag.Int("idle-n", 1000000, "enriched alerts in the large index of the idle-poll figure (0 skips it)")
	idleSm   = flag.Int("idle-small", 10000, "enriched alerts in the small index of the idle-poll figure")
	poll     = flag.Duration("poll", 5*time.Second, "poll interval of the live path in the run-loop figures")
	liveRate = flag.Int("live-rate", 20, "new alerts per second while the run-loop figures are measured")
	phase    = flag.Duration("phase", 60*time.Second, "length of the live-only and rate-limited phases")
)

// liveAlert is a new alert and when it became searchable.
type liveAlert struct {
	id      string
	visible time.Time
}

// traffic writes new alerts (in bursts, as rule executions do) and plays an analyst who
// changes the status of alerts of the last 7 days in bulk, guarded by if_seq_no as
// Kibana's update_by_query is, counting the conflicts.
type traffic struct {
	c     *elastic.Client
	space sample.KibanaSpace
	mu    sync.Mutex
	live  []liveAlert
	seq   atomic.Int64

	updates, conflicts atomic.Int64
}

func (tr *traffic) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tr.burst(ctx)
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tr.analyst(ctx)
		}
	}()
}

func (tr *traffic) burst(ctx context.Context) {
	docs := sample.Generate(*liveRate*2, uint64(tr.seq.Load()+1000))
	var buf bytes.Buffer
	var ids []string
	now := time.Now().UTC()
	for _, d := range docs {
		if d.Index != sample.KibanaAlias || len(ids) == *liveRate {
			continue
		}
		id := fmt.Sprintf("live-%08d", tr.seq.Add(1))
		d.Source["@timestamp"] = now.Format(time.RFC3339Nano)
		meta, _ := json.Marshal(map[string]any{"create": map[string]any{"_index": tr.space.Alias(), "_id": id}})
		src, _ := json.Marshal(d.Source)
		buf.Write(meta)
		buf.WriteByte('\n')
		buf.Write(src)
		buf.WriteByte('\n')
		ids = append(ids, id)
	}
	code, _, err := tr.c.Do(ctx, "other", http.MethodPost, "/_bulk", url.Values{"refresh": {"wait_for"}}, buf.Bytes())
	if err != nil || code != http.StatusOK {
		return
	}
	visible := time.Now()
	tr.mu.Lock()
	for _, id := range ids {
		tr.live = append(tr.live, liveAlert{id: id, visible: visible})
	}
	tr.mu.Unlock()
}

// analyst searches 100 random open alerts of the last 7 days and closes them.
func (tr *traffic) analyst(ctx context.Context) {
	q, _ := json.Marshal(map[string]any{"size": 100, "seq_no_primary_term": true, "_source": false,
		"query": map[string]any{"function_score": map[string]any{
			"query": map[string]any{"bool": map[string]any{"filter": []any{
				map[string]any{"range": map[string]any{"@timestamp": map[string]any{"gte": "now-7d"}}},
				map[string]any{"term": map[string]any{"kibana.alert.workflow_status": "open"}},
			}}},
			"random_score": map[string]any{"seed": rand.Int(), "field": "_seq_no"}}}})
	code, body, err := tr.c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(tr.space.Alias())+"/_search",
		url.Values{"expand_wildcards": {"open,hidden"}}, q)
	if err != nil || code != http.StatusOK {
		return
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
				Seq   int64  `json:"_seq_no"`
				Term  int64  `json:"_primary_term"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if json.Unmarshal(body, &res) != nil || len(res.Hits.Hits) == 0 {
		return
	}
	var buf bytes.Buffer
	for _, h := range res.Hits.Hits {
		meta, _ := json.Marshal(map[string]any{"update": map[string]any{"_index": h.Index, "_id": h.ID,
			"if_seq_no": h.Seq, "if_primary_term": h.Term}})
		buf.Write(meta)
		buf.WriteString("\n{\"doc\":{\"kibana.alert.workflow_status\":\"acknowledged\"}}\n")
	}
	code, body, err = tr.c.Do(ctx, "other", http.MethodPost, "/_bulk", nil, buf.Bytes())
	if err != nil || code != http.StatusOK {
		return
	}
	var br struct {
		Items []map[string]struct {
			Status int `json:"status"`
		} `json:"items"`
	}
	if json.Unmarshal(body, &br) != nil {
		return
	}
	for _, it := range br.Items {
		tr.updates.Add(1)
		if it["update"].Status == http.StatusConflict {
			tr.conflicts.Add(1)
		}
	}
}

// latencies reads the enriched_at of the live alerts written so far and returns their
// delays after becoming searchable.
func (tr *traffic) latencies(ctx context.Context) ([]time.Duration, int, error) {
	tr.mu.Lock()
	live := append([]liveAlert(nil), tr.live...)
	tr.mu.Unlock()
	if err := sample.Refresh(ctx, tr.c, []string{tr.space.Alias()}); err != nil {
		return nil, 0, err
	}
	var out []time.Duration
	missing := 0
	for start := 0; start < len(live); start += 1000 {
		part := live[start:min(start+1000, len(live))]
		ids := make([]string, len(part))
		for i, l := range part {
			ids[i] = l.id
		}
		q, _ := json.Marshal(map[string]any{"size": len(ids), "_source": []string{"attack_mappings.enriched_at"},
			"query": map[string]any{"ids": map[string]any{"values": ids}}})
		code, body, err := tr.c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(tr.space.Alias())+"/_search",
			url.Values{"expand_wildcards": {"open,hidden"}}, q)
		if err != nil || code != http.StatusOK {
			return nil, 0, fmt.Errorf("read live alerts: %v %s", err, snippetOf(body))
		}
		var res struct {
			Hits struct {
				Hits []struct {
					ID     string `json:"_id"`
					Source struct {
						AM struct {
							EnrichedAt time.Time `json:"enriched_at"`
						} `json:"attack_mappings"`
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, 0, err
		}
		at := map[string]time.Time{}
		for _, h := range res.Hits.Hits {
			at[h.ID] = h.Source.AM.EnrichedAt
		}
		for _, l := range part {
			if t, ok := at[l.id]; ok && !t.IsZero() {
				out = append(out, max(t.Sub(l.visible), 0))
			} else {
				missing++
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, missing, nil
}

func snippetOf(b []byte) string {
	if len(b) > 200 {
		return string(b[:200])
	}
	return string(b)
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(int(q*float64(len(ds))), len(ds)-1)]
}

// historyDocs are n Kibana sample alerts with @timestamps spread over the 30 days before
// the live window.
func historyDocs(space sample.KibanaSpace, n int) []sample.Doc {
	docs := kibanaDocs(space, n)
	end := time.Now().Add(-2 * time.Hour)
	step := 30 * 24 * time.Hour / time.Duration(max(n, 1))
	for i := range docs {
		docs[i].Source["@timestamp"] = end.Add(-time.Duration(i) * step).UTC().Format(time.RFC3339Nano)
	}
	return docs
}

// runLoop prints the live latency during a backfill, the backfill's rate next to the
// ceiling measured before, and the analyst's conflicts in each phase.
func runLoop(ctx context.Context, c *elastic.Client, ceiling float64) error {
	space := sample.KibanaSpace("benchloop")
	docs := historyDocs(space, *histN)
	fmt.Printf("run loop: %d history alerts, %d new alerts/s, poll interval %s\n", len(docs), *liveRate, *poll)
	if err := reset(ctx, c, space, docs); err != nil {
		return err
	}
	defer deleteSpace(ctx, c, space)
	defer c.Do(ctx, "other", http.MethodDelete, "/.benchloop-state", url.Values{"expand_wildcards": {"all"}}, nil)
	builtin, _ := rules.LoadBuiltin(rules.Options{})

	type result struct {
		name               string
		lat                []time.Duration
		missing            int
		updates, conflicts int64
		backfilled         float64
		took               time.Duration
		remainingAtEnd     float64
	}
	phaseRun := func(name string, rs *rules.Ruleset, inherit bool, rate float64, until func(m *metrics.Metrics) bool, maxDur time.Duration) (result, error) {
		m := metrics.New(prometheus.NewRegistry())
		mc, err := elastic.NewClient(config.Elasticsearch{URLs: []string{*esURL}, RequestTimeout: 120 * time.Second}, m)
		if err != nil {
			return result{}, err
		}
		o := runnerOpts()
		o.PollInterval, o.BackfillRate = *poll, rate
		attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: inherit, Detail: enrich.DetailCompact})
		p, err := enrich.NewPipeline([]enrich.PipelineStage{{Stage: attack, Required: true}}, "attack_mappings", m, nil)
		if err != nil {
			return result{}, err
		}
		store := elastic.NewStore(mc, elastic.StoreOptions{Indices: []string{space.Alias()}, InstallMappings: true, MaxRequestItems: o.BatchSize}, nil)
		state := elastic.NewState(mc, ".benchloop-state", []string{space.Alias()}, "bench")
		o.Scope = "benchloop"
		r := runner.New(store, state, p, o, m, nil)
		tr := &traffic{c: c, space: space}
		tr.seq.Store(time.Now().UnixNano() % 1e9 * 1000)
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		done := make(chan struct{})
		go func() { _ = r.Run(rctx); close(done) }()
		tctx, stopTraffic := context.WithCancel(ctx)
		tr.run(tctx, &wg)
		start := time.Now()
		for time.Since(start) < maxDur && !(time.Since(start) > 10*time.Second && until(m)) {
			time.Sleep(time.Second)
		}
		took := time.Since(start)
		stopTraffic()
		wg.Wait()
		time.Sleep(*poll + 2*time.Second) // the last new alerts' poll
		cancel()
		<-done
		lat, missing, err := tr.latencies(ctx)
		if err != nil {
			return result{}, err
		}
		var bf float64
		for _, o := range metrics.Outcomes {
			if o != "skipped_done" && o != "skipped_newer" {
				bf += counterValue(m.AlertsProcessed.WithLabelValues(metrics.PathBackfill, o))
			}
		}
		return result{name: name, lat: lat, missing: missing, updates: tr.updates.Load(), conflicts: tr.conflicts.Load(),
			backfilled: bf, took: took, remainingAtEnd: gaugeValue(m.BackfillLeft)}, nil
	}
	backfillDone := func(m *metrics.Metrics) bool { return gaugeValue(m.BackfillGen) > 0 }
	var results []result
	r1, err := phaseRun("backfill, no rate limit", builtin, true, 0, backfillDone, 20*time.Minute)
	if err != nil {
		return err
	}
	results = append(results, r1)
	r2, err := phaseRun("live only (history done)", builtin, true, 0, func(*metrics.Metrics) bool { return false }, *phase)
	if err != nil {
		return err
	}
	results = append(results, r2)
	// A new generation (another option): the history is pending again, backfilled at
	// the default rate.
	r3, err := phaseRun(fmt.Sprintf("backfill at %g alerts/s (default)", config.Default().Daemon.BackfillRate), builtin, false,
		config.Default().Daemon.BackfillRate, func(*metrics.Metrics) bool { return false }, *phase)
	if err != nil {
		return err
	}
	results = append(results, r3)
	for _, r := range results {
		fmt.Printf("  %-34s live latency p50 %6s p99 %6s (%d alerts, %d not enriched), analyst updates %d, conflicts %d (%.2f%%)",
			r.name, quantile(r.lat, 0.5).Round(time.Millisecond), quantile(r.lat, 0.99).Round(time.Millisecond), len(r.lat), r.missing,
			r.updates, r.conflicts, 100*float64(r.conflicts)/float64(max(r.updates, 1)))
		if r.backfilled > 0 {
			fmt.Printf(", backfill %.0f alerts/s", r.backfilled/r.took.Seconds())
		}
		fmt.Println()
	}
	fmt.Printf("  live latency p99 during the unlimited backfill  %6s next to poll_interval + 1 s = %s\n",
		quantile(r1.lat, 0.99).Round(time.Millisecond), (*poll + time.Second))
	if ceiling > 0 {
		fmt.Printf("  backfill, no rate limit                        %6.0f alerts/s next to the raw _bulk ceiling %.0f alerts/s: %.2f\n",
			r1.backfilled/r1.took.Seconds(), ceiling, r1.backfilled/r1.took.Seconds()/ceiling)
	}
	fmt.Println()
	return nil
}

// idlePoll measures a live poll that finds nothing to do, over an index of enriched
// alerts spread over 90 days, for a large and a small history.
func idlePoll(ctx context.Context, c *elastic.Client) error {
	costs := map[int]time.Duration{}
	for _, n := range []int{*idleSm, *idleBig} {
		d, err := idleCost(ctx, c, n)
		if err != nil {
			return err
		}
		costs[n] = d
	}
	fmt.Printf("idle poll (one live poll, nothing pending), median of 30:\n")
	fmt.Printf("  %8d enriched alerts              %8.1f ms\n", *idleSm, float64(costs[*idleSm].Microseconds())/1000)
	fmt.Printf("  %8d enriched alerts              %8.1f ms\n", *idleBig, float64(costs[*idleBig].Microseconds())/1000)
	fmt.Printf("  ratio                              %8.2f (target <= 1.5)\n\n", float64(costs[*idleBig])/float64(costs[*idleSm]))
	return nil
}

// idleCost builds (or reuses) an index of n enriched alerts and times idle live polls.
func idleCost(ctx context.Context, c *elastic.Client, n int) (time.Duration, error) {
	index := fmt.Sprintf("bench-idle-%d", n)
	stateIndex := ".bench-idle-state"
	builtin, _ := rules.LoadBuiltin(rules.Options{})
	p, err := pipeline(builtin, nil, enrich.DetailCompact)
	if err != nil {
		return 0, err
	}
	state := elastic.NewState(c, stateIndex, []string{"bench-idle-*"}, "bench")
	gen, err := state.RegisterGeneration(ctx, p.Generation(), "attack_mappings")
	if err != nil {
		return 0, err
	}
	if have := countMatching(ctx, c, index, nil); have != n {
		fmt.Printf("  building %s: %d enriched alerts (kept for later runs)\n", index, n)
		if err := buildIdle(ctx, c, index, n, p.WithGeneration(gen)); err != nil {
			return 0, err
		}
	}
	m := metrics.New(prometheus.NewRegistry())
	store := elastic.NewStore(c, elastic.StoreOptions{Indices: []string{index}, InstallMappings: true, MaxRequestItems: *batch}, nil)
	o := runnerOpts()
	o.Scope = index
	r := runner.New(store, state, p, o, m, nil)
	var ds []time.Duration
	for i := 0; i < 33; i++ {
		start := time.Now()
		if err := r.PollLive(ctx); err != nil {
			return 0, err
		}
		if i >= 3 {
			ds = append(ds, time.Since(start))
		}
		if w := counterValue(m.BulkItems.WithLabelValues("written")); w > 0 {
			return 0, fmt.Errorf("an idle poll wrote %v alerts: the index is not enriched by generation %d", w, gen)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], nil
}

// buildIdle loads n alerts, enriched offline by p (its generation stamped), with
// @timestamps spread over the 90 days before the live window.
func buildIdle(ctx context.Context, c *elastic.Client, index string, n int, p *enrich.Pipeline) error {
	c.Do(ctx, "other", http.MethodDelete, "/"+index, nil, nil)
	mapping := map[string]any{"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
		"mappings": map[string]any{"dynamic": false, "properties": map[string]any{
			"@timestamp": map[string]any{"type": "date"},
			"threat": map[string]any{"properties": map[string]any{"technique": map[string]any{"properties": map[string]any{
				"id": map[string]any{"type": "keyword"}}}}},
			"attack_mappings": elastic.RootMapping(),
		}}}
	b, _ := json.Marshal(mapping)
	if code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+index, nil, b); err != nil || code != http.StatusOK {
		return fmt.Errorf("create %s: %v %s", index, err, resp)
	}
	off := runner.NewOffline(p, runner.Options{MaxAttempts: 1}, nil, nil)
	end := time.Now().Add(-2 * time.Hour)
	step := 90 * 24 * time.Hour / time.Duration(n)
	const chunk = 5000
	tmpl := sample.Generate(200, 3)
	for start := 0; start < n; start += chunk {
		var alerts []*enrich.Alert
		for i := start; i < min(start+chunk, n); i++ {
			src := map[string]any{}
			for k, v := range tmpl[i%len(tmpl)].Source {
				src[k] = v
			}
			src["@timestamp"] = end.Add(-time.Duration(i) * step).UTC().Format(time.RFC3339Nano)
			src["threat"] = map[string]any{"technique": map[string]any{"id": "T1021.002"}}
			raw, _ := json.Marshal(src)
			alerts = append(alerts, &enrich.Alert{ID: fmt.Sprintf("idle-%d", i), Index: index, Raw: raw})
		}
		out, err := off.Enrich(ctx, alerts)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		for i, a := range alerts {
			if out[i] == nil {
				return fmt.Errorf("alert %s not enriched offline", a.ID)
			}
			buf.WriteString(`{"index":{"_index":"` + index + `","_id":"` + a.ID + "\"}}\n")
			buf.Write(out[i])
			buf.WriteByte('\n')
		}
		code, resp, err := c.Do(ctx, "bulk", http.MethodPost, "/_bulk", nil, buf.Bytes())
		if err != nil || code != http.StatusOK || bytes.Contains(resp[:min(len(resp), 64)], []byte(`"errors":true`)) {
			return fmt.Errorf("load %s: %v %d %.300s", index, err, code, resp)
		}
	}
	for _, req := range []struct{ m, p string }{
		{http.MethodPut, "/" + index + "/_settings"}, {http.MethodPost, "/" + index + "/_refresh"},
		{http.MethodPost, "/" + index + "/_forcemerge?max_num_segments=1"}} {
		var body []byte
		if req.m == http.MethodPut {
			body = []byte(`{"index":{"refresh_interval":"1s"}}`)
		}
		if code, resp, err := c.Do(ctx, "other", req.m, req.p, nil, body); err != nil || code != http.StatusOK {
			return fmt.Errorf("%s %s: %v %s", req.m, req.p, err, resp)
		}
	}
	return nil
}
