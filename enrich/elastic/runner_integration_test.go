//go:build integration

package elastic_test

// The run loop's failure cases against the real node: each one from the list of the
// production-service issue, with the figure it names.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

// recentDocs returns n Kibana sample alerts for a space with @timestamp now: live alerts.
func recentDocs(s sample.KibanaSpace, n int, seed uint64) []sample.Doc {
	docs := kibanaDocs(s, n, seed)
	now := time.Now().UTC()
	for i := range docs {
		docs[i].Source["@timestamp"] = now.Add(-time.Duration(i) * time.Second).Format(time.RFC3339Nano)
	}
	return docs
}

// versions returns each alert's _version.
func versions(t *testing.T, c *elastic.Client, index string) map[string]int {
	hits := searchAll(t, c, index, map[string]any{"match_all": map[string]any{}})
	out := map[string]int{}
	for _, h := range hits {
		out[h.ID] = h.Version
	}
	return out
}

// TestUnsearchableGenerationWritesOnce: with install_mappings off on Kibana's
// "dynamic": false index, nothing can select alerts by generation, so every poll reads
// them all again; over 30 s each alert is still written exactly once.
func TestUnsearchableGenerationWritesOnce(t *testing.T) {
	c := newClient(t, esURL(), nil)
	s := space(t, c)
	live := recentDocs(s, 40, 31)
	old := kibanaDocs(s, 20, 32)
	for i := range old {
		old[i].ID += "-old"
	}
	ctx := context.Background()
	if err := sample.Load(ctx, c, append(live, old...)); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	h := newHarness(t, c, m, []string{s.Alias()}, nil, func(so *elastic.StoreOptions, ro *runner.Options) {
		so.InstallMappings = false
		ro.SweepInterval = 2 * time.Second
	})
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = h.r.Run(rctx)
	for id, v := range versions(t, c, s.Alias()) {
		if v != 2 {
			t.Fatalf("%s has _version %d over 30 s, want 2 (loaded, then written once)", id, v)
		}
	}
	if n := testutil.ToFloat64(m.Passes.WithLabelValues(metrics.PathLive, "progress")) +
		testutil.ToFloat64(m.Passes.WithLabelValues(metrics.PathLive, "idle")) +
		testutil.ToFloat64(m.Passes.WithLabelValues(metrics.PathLive, "no_progress")); n > 40 {
		t.Fatalf("%v live polls in 30 s with a 1 s poll interval", n)
	}
}

// TestTwoGenerationsConverge: two daemons whose rulesets differ (a rolling upgrade) run
// side by side; every alert ends enriched by the newer generation, written at most twice.
func TestTwoGenerationsConverge(t *testing.T) {
	c := newClient(t, esURL(), nil)
	s := space(t, c)
	docs := append(recentDocs(s, 60, 41), kibanaDocs(s, 40, 42)...)
	for i := range docs[60:] {
		docs[60+i].ID += "-old"
	}
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	rs, _ := rules.LoadBuiltin(rules.Options{})
	olderP := func() *enrich.Pipeline {
		attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: false})
		p, err := enrich.NewPipeline([]enrich.PipelineStage{{Stage: attack, Required: true}}, "attack_mappings", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}()
	fast := func(_ *elastic.StoreOptions, ro *runner.Options) { ro.SweepInterval = 2 * time.Second }
	older := newHarness(t, c, nil, []string{s.Alias()}, olderP, fast)
	// The older generation is registered first, as a daemon that ran before the upgrade.
	if _, err := older.state.RegisterGeneration(ctx, olderP.Generation(), "attack_mappings"); err != nil {
		t.Fatal(err)
	}
	so := elastic.StoreOptions{Indices: []string{s.Alias()}, InstallMappings: true, MaxRequestItems: 50}
	ro := testOptions()
	ro.SweepInterval = 2 * time.Second
	newer := newHarnessState(t, c, metrics.New(prometheus.NewRegistry()), []string{s.Alias()}, pipelineFor(t, nil, nil),
		older.stateX, so, ro)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = older.r.Run(rctx) }()
	go func() { defer wg.Done(); _ = newer.r.Run(rctx) }()
	wg.Wait()
	hits := searchAll(t, c, s.Alias(), map[string]any{"match_all": map[string]any{}})
	for _, h := range hits {
		g := root(h)["ruleset"].(map[string]any)["generation"].(float64)
		if g != 2 {
			t.Fatalf("%s ends with generation %v, want 2", h.ID, g)
		}
		if h.Version > 3 {
			t.Fatalf("%s has _version %d: written %d times, want at most 2", h.ID, h.Version, h.Version-1)
		}
	}
	if len(hits) != len(docs) {
		t.Fatalf("%d of %d alerts", len(hits), len(docs))
	}
}

// TestIndexProblemsDoNotBlock: one index whose mapping conflicts with enricher's and one
// that is read-only (ILM's write block) are left out and named; the healthy index is
// enriched; RunOnce returns within 60 s.
func TestIndexProblemsDoNotBlock(t *testing.T) {
	c := newClient(t, esURL(), nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("enr-probs-%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() { c.Do(ctx, "other", http.MethodDelete, "/"+prefix+"-*", nil, nil) })
	mk := func(name string, mapping string) {
		body := `{"settings":{"number_of_shards":1,"number_of_replicas":0}` + mapping + `}`
		if code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+name, nil, []byte(body)); err != nil || code != 200 {
			t.Fatalf("create %s: %v %s", name, err, resp)
		}
	}
	mk(prefix+"-good", "")
	mk(prefix+"-conflict", `,"mappings":{"properties":{"attack_mappings":{"properties":{"controls":{"type":"keyword"}}}}}`)
	mk(prefix+"-readonly", "")
	var docs []sample.Doc
	for _, ix := range []string{"good", "conflict", "readonly"} {
		for i := 0; i < 30; i++ {
			docs = append(docs, sample.Doc{Index: prefix + "-" + ix, ID: fmt.Sprintf("%s-%d", ix, i), Source: map[string]any{
				"@timestamp": time.Now().UTC().Format(time.RFC3339), "threat": map[string]any{"technique": map[string]any{"id": "T1021.002"}}}})
		}
	}
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	if code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+prefix+"-readonly/_settings", nil, []byte(`{"index.blocks.write":true}`)); err != nil || code != 200 {
		t.Fatalf("block writes: %v %s", err, resp)
	}
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodPut, "/"+prefix+"-readonly/_settings", nil, []byte(`{"index.blocks.write":false}`))
	})
	m := metrics.New(prometheus.NewRegistry())
	h := newHarness(t, c, m, []string{prefix + "-*"}, nil)
	start := time.Now()
	sum, err := h.r.RunOnce(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), prefix+"-conflict: mapping_conflict") ||
		!strings.Contains(err.Error(), prefix+"-readonly: read_only") {
		t.Fatalf("err = %v (summary %+v), want both bad indices named", err, sum)
	}
	if !strings.Contains(err.Error(), "attack_mappings.controls") {
		t.Fatalf("err = %v, want the conflicting field named", err)
	}
	if took > 60*time.Second {
		t.Fatalf("RunOnce took %s", took)
	}
	if sum.Written != 30 {
		t.Fatalf("written %d, want the 30 alerts of the healthy index", sum.Written)
	}
	if n := len(searchAll(t, c, prefix+"-good", map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.generation"}})); n != 30 {
		t.Fatalf("%d of 30 enriched in the healthy index", n)
	}
	t.Logf("RunOnce with two bad indices took %s", took.Round(time.Millisecond))
}

// TestPoisonAlertQuarantinedAndRequeued: a required stage that fails on one alert fails
// its batch; the batch is split, the rest written, the alert quarantined with the reason
// on it. Requeue makes it pending again, and once the stage is fixed it is enriched.
func TestPoisonAlertQuarantinedAndRequeued(t *testing.T) {
	c := newClient(t, esURL(), nil)
	s := space(t, c)
	docs := kibanaDocs(s, 100, 51)
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	poison := docs[37].ID
	var broken atomic.Bool
	broken.Store(true)
	crashy := &enrich.StageFunc{StageName: "crashy", StageNS: "crashy", Func: func(_ context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
		out := make([]enrich.Patch, len(alerts))
		for i, a := range alerts {
			if a.ID == poison && broken.Load() {
				return nil, fmt.Errorf("plugin crashed: %w: %w", enrich.ErrStageUnavailable, enrich.ErrBatchFailed)
			}
			out[i] = enrich.Patch{"crashy": map[string]any{"seen": true}}
		}
		return out, nil
	}}
	m := metrics.New(prometheus.NewRegistry())
	p := pipelineFor(t, m, nil, enrich.PipelineStage{Stage: crashy, Required: true})
	h := newHarness(t, c, m, []string{s.Alias()}, p)
	sum, err := h.r.RunOnce(ctx)
	if err == nil || sum.Quarantined != 1 || sum.Written != len(docs)-1 {
		t.Fatalf("summary %+v, err %v: want %d written and 1 quarantined", sum, err, len(docs)-1)
	}
	hits := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.status": "quarantined"}})
	if len(hits) != 1 || hits[0].ID != poison {
		t.Fatalf("quarantined: %v", hits)
	}
	q := root(hits[0])["quarantine"].(map[string]any)
	if !strings.Contains(q["reason"].(string), "plugin crashed") || q["attempts"].(float64) != 3 {
		t.Fatalf("quarantine marker %v", q)
	}
	// Requeue by ID; with the stage fixed, the alert is enriched.
	res, err := h.store.Requeue(ctx, "attack_mappings", map[string]any{"ids": map[string]any{"values": []string{poison}}})
	if err != nil || res.Requeued != 1 {
		t.Fatalf("requeue: %+v %v", res, err)
	}
	broken.Store(false)
	sample.Refresh(ctx, c, []string{s.Alias()})
	sum, err = h.r.RunOnce(ctx)
	if err != nil || sum.Written != 1 {
		t.Fatalf("after requeue: %+v %v", sum, err)
	}
	got := searchAll(t, c, s.Alias(), map[string]any{"ids": map[string]any{"values": []string{poison}}})
	if r := root(got[0]); r["status"] == "quarantined" || r["quarantine"] != nil || r["ruleset"] == nil {
		t.Fatalf("requeued alert: %v", r)
	}
}

// proxy puts an HTTP handler in front of the real node.
func proxy(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte, forward func() (*http.Response, []byte)) bool) string {
	t.Helper()
	target, _ := url.Parse(esURL())
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		forward := func() (*http.Response, []byte) {
			req, _ := http.NewRequest(r.Method, target.String()+r.URL.RequestURI(), bytes.NewReader(body))
			req.Header = r.Header.Clone()
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("forward: %v", err)
				return nil, nil
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res, b
		}
		if handle(w, r, body, forward) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// TestLostBulkResponse: Elasticsearch applies a bulk write but the response never
// arrives (the connection drops). The alerts are re-read, recognised as done, and not
// written twice.
func TestLostBulkResponse(t *testing.T) {
	real := newClient(t, esURL(), nil)
	s := space(t, real)
	docs := kibanaDocs(s, 120, 61)
	ctx := context.Background()
	if err := sample.Load(ctx, real, docs); err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Int32
	addr := proxy(t, func(w http.ResponseWriter, r *http.Request, body []byte, forward func() (*http.Response, []byte)) bool {
		// Two batches are in flight at once: exactly one response is lost.
		if r.URL.Path != "/_bulk" || !dropped.CompareAndSwap(0, 1) {
			return false
		}
		forward() // applied by Elasticsearch
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the response is lost
		}
		return true
	})
	c := newClient(t, addr, nil)
	h := newHarness(t, c, nil, []string{s.Alias()}, nil)
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if dropped.Load() != 1 {
		t.Fatalf("%d bulk responses dropped, want 1", dropped.Load())
	}
	for id, v := range versions(t, real, s.Alias()) {
		if v != 2 {
			t.Fatalf("%s has _version %d, want 2 (written once)", id, v)
		}
	}
}

// TestTooLargeSplits: a request over the body limit of what stands in front of the node
// (413, as nginx's client_max_body_size or Elasticsearch's http.max_content_length
// answer) is split until it fits; every alert is written.
func TestTooLargeSplits(t *testing.T) {
	real := newClient(t, esURL(), nil)
	s := space(t, real)
	docs := kibanaDocs(s, 100, 71)
	ctx := context.Background()
	if err := sample.Load(ctx, real, docs); err != nil {
		t.Fatal(err)
	}
	const limit = 40 << 10
	var refused, passed atomic.Int32
	addr := proxy(t, func(w http.ResponseWriter, r *http.Request, body []byte, _ func() (*http.Response, []byte)) bool {
		if r.URL.Path != "/_bulk" {
			return false
		}
		if len(body) > limit {
			refused.Add(1)
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, `{"error":{"type":"content_too_long_exception","reason":"request body is too large"},"status":413}`)
			return true
		}
		passed.Add(1)
		return false
	})
	c := newClient(t, addr, nil)
	h := newHarness(t, c, nil, []string{s.Alias()}, nil)
	sum, err := h.r.RunOnce(ctx)
	if err != nil || sum.Written != len(docs) {
		t.Fatalf("%+v %v", sum, err)
	}
	if refused.Load() == 0 || passed.Load() <= 2 {
		t.Fatalf("refused %d, passed %d: the request was not split", refused.Load(), passed.Load())
	}
	t.Logf("413 answers %d, requests that fit %d", refused.Load(), passed.Load())
	for id, v := range versions(t, real, s.Alias()) {
		if v != 2 {
			t.Fatalf("%s has _version %d", id, v)
		}
	}
}

// TestLiveAlertsWhileBackfilling: new alerts are enriched by the live path within the
// poll interval plus a second while a rate-limited backfill works through the history.
func TestLiveAlertsWhileBackfilling(t *testing.T) {
	c := newClient(t, esURL(), nil)
	s := space(t, c)
	ctx := context.Background()
	if err := sample.Load(ctx, c, kibanaDocs(s, 1500, 81)); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	h := newHarness(t, c, m, []string{s.Alias()}, nil, func(_ *elastic.StoreOptions, ro *runner.Options) {
		ro.BackfillRate = 100 // 15 s for the history
	})
	rctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	go func() { _ = h.r.Run(rctx) }()
	time.Sleep(3 * time.Second)
	var worst time.Duration
	for i := 0; i < 5; i++ {
		d := recentDocs(s, 1, uint64(90+i))[0]
		d.ID = fmt.Sprintf("live-%d", i)
		b, _ := json.Marshal(d.Source)
		code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+url.PathEscape(s.Alias())+"/_doc/"+d.ID,
			url.Values{"refresh": {"wait_for"}}, b)
		if err != nil || code/100 != 2 {
			t.Fatalf("index: %v %s", err, resp)
		}
		visible := time.Now()
		for {
			if r := rawSource(t, c, s.Alias(), d.ID); bytes.Contains(r, []byte(`"attack_mappings"`)) {
				break
			}
			if time.Since(visible) > 5*time.Second {
				t.Fatalf("live alert %s not enriched within 5 s", d.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		worst = max(worst, time.Since(visible))
		time.Sleep(700 * time.Millisecond)
	}
	if worst > 2*time.Second {
		t.Fatalf("worst live latency %s, want at most poll interval (1 s) + 1 s", worst)
	}
	if left := testutil.ToFloat64(m.BackfillLeft); left <= 0 {
		t.Fatalf("backfill remaining %v: the backfill should still have been running", left)
	}
	t.Logf("worst live latency %s during the backfill", worst.Round(time.Millisecond))
}

// TestOlderMappingCompleted: an index mapped by an older enricher (part of today's root
// object) gets the fields a newer one adds, and nothing it had changes.
func TestOlderMappingCompleted(t *testing.T) {
	c := newClient(t, esURL(), nil)
	s := space(t, c)
	ctx := context.Background()
	older := `{"properties":{"attack_mappings":{"dynamic":false,"properties":{"status":{"type":"keyword"},` +
		`"ruleset":{"properties":{"hash":{"type":"keyword"}}}}}}}`
	if code, resp, err := c.Do(ctx, "other", http.MethodPut, "/"+s.Backing()+"/_mapping", nil, []byte(older)); err != nil || code != 200 {
		t.Fatalf("older mapping: %v %s", err, resp)
	}
	store := elastic.NewStore(c, elastic.StoreOptions{Indices: []string{s.Alias()}, InstallMappings: true}, nil)
	ready, problems, err := store.Prepare(ctx, nil)
	if err != nil || len(problems) > 0 || len(ready) != 1 {
		t.Fatalf("prepare: ready %v problems %v err %v", ready, problems, err)
	}
	_, body, err := c.Do(ctx, "other", http.MethodGet, "/"+s.Backing()+"/_mapping/field/attack_mappings.*", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]struct {
		Mappings map[string]json.RawMessage `json:"mappings"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	got := m[s.Backing()].Mappings
	for _, f := range []string{"attack_mappings.status", "attack_mappings.ruleset.hash", "attack_mappings.ruleset.generation",
		"attack_mappings.quarantine.reason", "attack_mappings.controls.id"} {
		if _, ok := got[f]; !ok {
			t.Errorf("%s not mapped after prepare (have %d fields)", f, len(got))
		}
	}
	// Prepared once, ready again without a write.
	if ready, problems, err := store.Prepare(ctx, nil); err != nil || len(problems) > 0 || len(ready) != 1 {
		t.Fatalf("second prepare: %v %v %v", ready, problems, err)
	}
}
