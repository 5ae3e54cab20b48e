//go:build integration

package elastic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

func esURL() string {
	if u := os.Getenv("ELASTICSEARCH_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:9200"
}

func newClient(t testing.TB, rawURL string, m *metrics.Metrics) *elastic.Client {
	t.Helper()
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{rawURL}, RequestTimeout: 20 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("no Elasticsearch at %s (start one with `make es-up`): %v %s", rawURL, err, body)
	}
	return c
}

// space returns a unique Kibana space for one test and removes its indices afterwards.
func space(t testing.TB, c *elastic.Client) sample.KibanaSpace {
	t.Helper()
	s := sample.KibanaSpace(fmt.Sprintf("t%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000)))
	if err := sample.SetupKibana(context.Background(), c, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		c.Do(ctx, "other", http.MethodDelete, "/.internal.alerts-security.alerts-"+string(s)+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
		c.Do(ctx, "other", http.MethodDelete, "/_index_template/"+url.PathEscape(s.Template()), nil, nil)
	})
	return s
}

// kibanaDocs returns n sample documents retargeted at a space's alias.
func kibanaDocs(s sample.KibanaSpace, n int, seed uint64) []sample.Doc {
	var out []sample.Doc
	for _, d := range sample.Generate(n*2, seed) {
		if d.Index == sample.KibanaAlias && len(out) < n {
			d.Index = s.Alias()
			out = append(out, d)
		}
	}
	return out
}

type harness struct {
	c      *elastic.Client
	m      *metrics.Metrics
	p      *enrich.Pipeline
	store  *elastic.Store
	state  *elastic.State
	r      *runner.Runner
	stateX string
}

// testOptions are runner options that keep tests short.
func testOptions() runner.Options {
	return runner.Options{BatchSize: 50, MaxRetries: 5, MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond,
		BackoffMax: 2 * time.Second, PollInterval: time.Second, LiveWindow: time.Hour, SweepInterval: time.Hour,
		IndexRetry: time.Minute, ShutdownTimeout: 10 * time.Second, TechniqueFields: enrich.DefaultFields,
		Settle: time.Second, MaxAlertBytes: 10 << 20}
}

// pipelineFor is the ATT&CK stage over rs (built-in rules when nil), then extra stages.
func pipelineFor(t testing.TB, m *metrics.Metrics, rs *rules.Ruleset, extra ...enrich.PipelineStage) *enrich.Pipeline {
	t.Helper()
	if rs == nil {
		var err error
		if rs, err = rules.LoadBuiltin(rules.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true})
	stages := append([]enrich.PipelineStage{{Stage: attack, Required: true}}, extra...)
	var obs enrich.Observer
	if m != nil {
		obs = m
	}
	p, err := enrich.NewPipeline(stages, "attack_mappings", obs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newHarness wires a store, a state store of the test's own and a runner over indices.
func newHarness(t testing.TB, c *elastic.Client, m *metrics.Metrics, indices []string, p *enrich.Pipeline, opts ...func(*elastic.StoreOptions, *runner.Options)) *harness {
	t.Helper()
	if m == nil {
		m = metrics.New(prometheus.NewRegistry())
	}
	if p == nil {
		p = pipelineFor(t, m, nil)
	}
	so := elastic.StoreOptions{Indices: indices, InstallMappings: true, MaxRequestItems: 50,
		Namespaces: map[string]map[string]any{}}
	for _, st := range p.Stages()[1:] {
		so.Namespaces[st.Stage.Namespace()] = elastic.PluginNamespaceMapping()
	}
	ro := testOptions()
	for _, o := range opts {
		o(&so, &ro)
	}
	stateX := fmt.Sprintf(".enricher-state-test-%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000))
	t.Cleanup(func() {
		c.Do(context.Background(), "other", http.MethodDelete, "/"+stateX, url.Values{"expand_wildcards": {"all"}}, nil)
	})
	return newHarnessState(t, c, m, indices, p, stateX, so, ro)
}

// newHarnessState is newHarness with a given state index (replicas and restarts share one).
func newHarnessState(t testing.TB, c *elastic.Client, m *metrics.Metrics, indices []string, p *enrich.Pipeline, stateX string,
	so elastic.StoreOptions, ro runner.Options) *harness {
	store := elastic.NewStore(c, so, testLogger(t))
	state := elastic.NewState(c, stateX, indices, "test")
	r := runner.New(store, state, p, ro, m, testLogger(t))
	return &harness{c: c, m: m, p: p, store: store, state: state, r: r, stateX: stateX}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

type searchHit struct {
	Index   string         `json:"_index"`
	ID      string         `json:"_id"`
	Version int            `json:"_version"`
	Source  map[string]any `json:"_source"`
}

func searchAll(t testing.TB, c *elastic.Client, index string, query map[string]any) []searchHit {
	t.Helper()
	if err := sample.Refresh(context.Background(), c, []string{index}); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"size": 10000, "version": true, "query": query})
	code, resp, err := c.Do(context.Background(), "search", http.MethodPost, "/"+url.PathEscape(index)+"/_search",
		url.Values{"expand_wildcards": {"open,hidden"}}, body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("search %s: %v %s", index, err, resp)
	}
	var r struct {
		Hits struct {
			Hits []searchHit `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	return r.Hits.Hits
}

func root(h searchHit) map[string]any {
	r, _ := h.Source["attack_mappings"].(map[string]any)
	return r
}

func TestEnrichKibanaAlertsEndToEnd(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	docs := kibanaDocs(s, 300, 7)
	if err := sample.Load(context.Background(), c, docs); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, c, m, []string{".alerts-security.alerts-" + string(s)}, nil)
	before := map[string]json.RawMessage{}
	for _, d := range docs {
		before[d.ID] = rawSource(t, c, s.Alias(), d.ID)
	}
	res, err := h.r.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != len(docs) {
		t.Fatalf("written %d, want %d", res.Written, len(docs))
	}
	// Every byte outside the root is as it was.
	for id, b := range before {
		after := rawSource(t, c, s.Alias(), id)
		i := bytes.Index(after, []byte(`,"attack_mappings":`))
		if i < 0 || !bytes.Equal(append(after[:i:i], '}'), b) {
			t.Fatalf("%s: source changed outside the root:\nbefore %s\nafter  %s", id, b, after)
		}
	}
	// The enrichment is searchable: the root object is mapped on the dynamic:false index.
	hits := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.controls.id": "AC-17"}})
	if len(hits) == 0 {
		t.Fatal("no alert found by attack_mappings.controls.id:AC-17")
	}
	for _, hit := range hits {
		r := root(hit)
		if r["status"] != enrich.StatusEnriched {
			t.Fatalf("%s: status %v", hit.ID, r["status"])
		}
		if hit.Source["kibana.alert.workflow_status"] != "open" {
			t.Fatalf("%s: workflow status changed: %v", hit.ID, hit.Source["kibana.alert.workflow_status"])
		}
		dets, _ := r["detections"].([]any)
		found := false
		for _, d := range dets {
			dm := d.(map[string]any)
			if dm["product"] == "Microsoft Defender for Identity" {
				as, _ := dm["alerts"].([]any)
				if len(as) == 2 {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("%s: Defender for Identity alerts 2019/2030 missing: %v", hit.ID, dets)
		}
	}
	byID := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.detections.alerts.id": "2019"}})
	if len(byID) != len(hits) {
		t.Fatalf("alerts with MDI 2019: %d, with AC-17: %d", len(byID), len(hits))
	}
	// Malformed values are skipped with reasons; valid IDs elsewhere still count.
	bad := searchAll(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.problems.reason"}})
	if len(bad) == 0 {
		t.Fatal("no alert recorded problems")
	}
	mixed := 0
	for _, hit := range bad {
		if root(hit)["status"] == enrich.StatusEnriched {
			mixed++ // a malformed value beside a valid one: the valid one still counts
		}
	}
	if mixed == 0 {
		t.Fatal("no alert with a malformed value beside a valid ID was enriched")
	}
	none := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.status": "no_technique"}})
	if len(none) == 0 {
		t.Fatal("the alerts with only malformed values were not marked no_technique")
	}
	// Nothing is pending any more: a second run writes nothing.
	res, err = h.r.RunOnce(context.Background())
	if err != nil || res.Written != 0 {
		t.Fatalf("second run wrote %d (err %v)", res.Written, err)
	}
	if got := testutil.ToFloat64(m.AlertsProcessed.WithLabelValues(metrics.PathOnce, "no_technique")); got != float64(len(none)) {
		t.Fatalf("no_technique metric %v, want %d", got, len(none))
	}
}

// TestAnalystEditRace: an analyst closes an alert between enricher's read and its write.
// The guarded write gets 409, the alert is re-read and re-enriched, and the analyst's
// status survives.
func TestAnalystEditRace(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	docs := kibanaDocs(s, 20, 11)
	if err := sample.Load(context.Background(), c, docs); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	analyst := &enrich.StageFunc{StageName: "analyst", StageNS: "analyst_sim",
		Func: func(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
			once.Do(func() {
				for _, a := range alerts[:5] {
					body := `{"doc":{"kibana.alert.workflow_status":"closed","kibana.alert.workflow_tags":["triaged"]}}`
					code, resp, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(a.Index)+"/_update/"+url.PathEscape(a.ID),
						url.Values{"refresh": {"true"}}, []byte(body))
					if err != nil || code != http.StatusOK {
						t.Errorf("analyst update: %v %s", err, resp)
					}
				}
			})
			return make([]enrich.Patch, len(alerts)), nil
		}}
	h := newHarness(t, c, m, []string{s.Alias()}, pipelineFor(t, m, nil, enrich.PipelineStage{Stage: analyst}))
	if _, err := h.r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m.BulkItems.WithLabelValues("conflict")); n < 5 {
		t.Fatalf("conflicts = %v, want >= 5", n)
	}
	hits := searchAll(t, c, s.Alias(), map[string]any{"match_all": map[string]any{}})
	closed := 0
	for _, hit := range hits {
		if root(hit)["ruleset"] == nil {
			t.Fatalf("%s not enriched", hit.ID)
		}
		if hit.Source["kibana.alert.workflow_status"] == "closed" {
			closed++
			if tags, _ := hit.Source["kibana.alert.workflow_tags"].([]any); len(tags) != 1 {
				t.Fatalf("%s lost workflow tags: %v", hit.ID, hit.Source["kibana.alert.workflow_tags"])
			}
		}
	}
	if closed != 5 {
		t.Fatalf("closed alerts = %d, want 5 (analyst edits lost)", closed)
	}
}

// TestRulesChangeReenriches: a new fingerprint is a new generation, and every alert is
// enriched again; the same content under another label is not.
func TestRulesChangeReenriches(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	docs := kibanaDocs(s, 60, 3)
	if err := sample.Load(context.Background(), c, docs); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, c, m, []string{s.Alias()}, nil)
	if _, err := h.r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs2, err := rules.LoadBuiltin(rules.Options{Version: "edited"})
	if err != nil {
		t.Fatal(err)
	}
	// Same content, other label: same fingerprint, so nothing to do.
	h2 := newHarnessState(t, c, m, []string{s.Alias()}, pipelineFor(t, m, rs2), h.stateX,
		elastic.StoreOptions{Indices: []string{s.Alias()}, InstallMappings: true}, testOptions())
	if res, err := h2.r.RunOnce(context.Background()); err != nil || res.Written != 0 {
		t.Fatalf("same content re-enriched %d alerts (err %v)", res.Written, err)
	}
	// Different content: every alert again, as generation 2.
	dir := t.TempDir()
	b, _ := rules.Builtin.ReadFile("builtin/nist_800_53-rev5_t1021.002.yaml")
	os.WriteFile(filepath.Join(dir, "nist.yaml"), b, 0o644)
	rs3, err := rules.LoadDir(os.DirFS(dir), rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p3 := pipelineFor(t, m, rs3)
	h3 := newHarnessState(t, c, m, []string{s.Alias()}, p3, h.stateX,
		elastic.StoreOptions{Indices: []string{s.Alias()}, InstallMappings: true}, testOptions())
	res, err := h3.r.RunOnce(context.Background())
	if err != nil || res.Written != len(docs) {
		t.Fatalf("after a rules change re-enriched %d of %d (err %v)", res.Written, len(docs), err)
	}
	hits := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.ruleset.generation": 2}})
	if len(hits) != len(docs) {
		t.Fatalf("%d alerts carry generation 2, want %d", len(hits), len(docs))
	}
	if hits[0].Source["attack_mappings"].(map[string]any)["ruleset"].(map[string]any)["hash"] != p3.Generation().Hash {
		t.Fatal("fingerprint not written")
	}
}

// TestRolloverGetsMappings: a new backing index created by rollover (without enricher's
// fields in its template) gets the mapping before alerts in it are written.
func TestRolloverGetsMappings(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	ctx := context.Background()
	if err := sample.Load(ctx, c, kibanaDocs(s, 10, 5)); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, c, m, []string{".alerts-security.alerts-" + string(s)}, nil)
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	code, resp, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(s.Alias())+"/_rollover", nil, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("rollover: %v %s", err, resp)
	}
	more := kibanaDocs(s, 20, 99)
	for i := range more {
		more[i].ID += "-after-rollover"
	}
	if err := sample.Load(ctx, c, more); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	second := ".internal.alerts-security.alerts-" + string(s) + "-000002"
	hits := searchAll(t, c, second, map[string]any{
		"term": map[string]any{"attack_mappings.ruleset.hash": h.p.Generation().Hash}})
	if len(hits) != len(more) {
		t.Fatalf("%d alerts in the rolled-over index are searchable as enriched, want %d", len(hits), len(more))
	}
}

// TestServerRestartMidRun stops and restarts a dedicated node of the suite's server
// (Elasticsearch 8.19, or OpenSearch when ELASTICSEARCH_URL points at one) while a run is
// in flight. Afterwards every alert is enriched, exactly once (_version 2: the load, then
// one update).
func TestServerRestartMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a dedicated node (~40 s); skipped with -short")
	}
	up, down, portVar, port, server := "es-up.sh", "es-down.sh", "ES_PORT", "9261", "Elasticsearch"
	if srv, err := newClient(t, esURL(), nil).Server(context.Background()); err != nil {
		t.Fatal(err)
	} else if srv.Distribution == elastic.DistributionOpenSearch {
		up, down, portVar, port, server = "opensearch-up.sh", "opensearch-down.sh", "OS_PORT", "9262", "OpenSearch"
	}
	scripts := filepath.Join(repoRoot(t), "scripts")
	// A plain node whatever the caller's environment says (exec keeps the last of a key).
	esEnv := append(os.Environ(), portVar+"="+port, "ES_SECURITY=false", "ES_TLS_DIR=", "OS_SECURITY=false", "OS_TLS_DIR=", "OS_ADMIN_PASSWORD=")
	run := func(name string, args ...string) {
		cmd := exec.Command(filepath.Join(scripts, name), args...)
		cmd.Env = esEnv
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	run(down, "--wipe")
	run(up)
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(scripts, down), "--wipe")
		cmd.Env = esEnv
		_ = cmd.Run()
	})
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, "http://127.0.0.1:"+port, m)
	s := space(t, c)
	docs := kibanaDocs(s, 1500, 21)
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int32
	restarted := make(chan struct{})
	slow := &enrich.StageFunc{StageName: "restart_es", StageNS: "restart_sim",
		Func: func(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
			if batches.Add(1) == 4 {
				go func() {
					defer close(restarted)
					run(down)
					time.Sleep(2 * time.Second)
					run(up)
				}()
				time.Sleep(500 * time.Millisecond) // let the node go down under this batch's write
			}
			return make([]enrich.Patch, len(alerts)), nil
		}}
	h := newHarness(t, c, m, []string{s.Alias()}, pipelineFor(t, m, nil, enrich.PipelineStage{Stage: slow}))
	rctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if _, err := h.r.RunOnce(rctx); err != nil {
		t.Fatal(err)
	}
	<-restarted
	hits := searchAll(t, c, s.Alias(), map[string]any{"match_all": map[string]any{}})
	if len(hits) != len(docs) {
		t.Fatalf("%d alerts after the restart, want %d", len(hits), len(docs))
	}
	for _, hit := range hits {
		if root(hit)["ruleset"] == nil {
			t.Fatalf("%s not enriched", hit.ID)
		}
		if hit.Version != 2 {
			t.Fatalf("%s has _version %d, want 2 (enriched exactly once)", hit.ID, hit.Version)
		}
	}
	if n := testutil.ToFloat64(m.ESRequests.WithLabelValues("bulk", "error")) +
		testutil.ToFloat64(m.ESRequests.WithLabelValues("search", "error")) +
		testutil.ToFloat64(m.ESRequests.WithLabelValues("pit_open", "error")) +
		testutil.ToFloat64(m.ESRequests.WithLabelValues("state", "error")) +
		testutil.ToFloat64(m.ESRequests.WithLabelValues("mapping", "error")); n == 0 {
		t.Fatalf("no request failed: %s was not down during the run", server)
	}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// TestPluginNamespaceSearchable: what a plugin writes into a Kibana-like "dynamic": false
// index is mapped (its namespace is one flattened field), so analysts can filter on it; a
// plugin added after the first enrichment gets its mapping on the already-mapped index.
func TestPluginNamespaceSearchable(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	docs := kibanaDocs(s, 40, 13)
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	// First without the plugin: the root object gets mapped.
	first := newHarness(t, c, m, []string{s.Alias()}, nil)
	if _, err := first.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	asset := &enrich.StageFunc{StageName: "asset", StageNS: "asset", StageFields: []string{"host.name"},
		Func: func(_ context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
			out := make([]enrich.Patch, len(alerts))
			for i := range alerts {
				out[i] = enrich.Patch{"asset": map[string]any{"criticality": "high", "owner": "it-ops"}}
			}
			return out, nil
		}}
	// A new stage is a new generation: every alert is enriched again, with the plugin.
	h := newHarnessState(t, c, m, []string{s.Alias()}, pipelineFor(t, m, nil, enrich.PipelineStage{Stage: asset}), first.stateX,
		elastic.StoreOptions{Indices: []string{s.Alias()}, InstallMappings: true,
			Namespaces: map[string]map[string]any{"asset": elastic.PluginNamespaceMapping()}}, testOptions())
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	hits := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"asset.criticality": "high"}})
	if len(hits) != len(docs) {
		t.Fatalf("%d of %d alerts found by asset.criticality", len(hits), len(docs))
	}
	if n := searchAll(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.pending_stages"}}); len(n) != 0 {
		t.Fatalf("%d alerts still pending", len(n))
	}

	// The inventory loses the owner: the next enrichment (a stage pending again) replaces
	// the whole namespace, so asset.owner goes instead of staying merged in.
	asset.Func = func(_ context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
		out := make([]enrich.Patch, len(alerts))
		for i := range alerts {
			out[i] = enrich.Patch{"asset": map[string]any{"criticality": "low"}}
		}
		return out, nil
	}
	body := `{"doc":{"attack_mappings":{"pending_stages":["asset"]}}}`
	for _, d := range docs {
		if code, resp, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(s.Alias())+"/_update/"+url.PathEscape(d.ID), nil, []byte(body)); err != nil || code != 200 {
			t.Fatalf("mark pending: %v %s", err, resp)
		}
	}
	sample.Refresh(ctx, c, []string{s.Alias()})
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := searchAll(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "asset.owner"}}); len(n) != 0 {
		t.Fatalf("%d alerts kept a stale asset.owner", len(n))
	}
	if n := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"asset.criticality": "low"}}); len(n) != len(docs) {
		t.Fatalf("%d of %d alerts have the new criticality", len(n), len(docs))
	}
}

// TestElasticsearchDownAtStart: enricher starts while nothing answers on the Elasticsearch
// address, logs, retries with backoff, and catches up once the node is reachable (a proxy to
// the real node starts listening on that address two seconds later).
func TestElasticsearchDownAtStart(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	real := newClient(t, esURL(), nil)
	s := space(t, real)
	docs := kibanaDocs(s, 100, 23)
	ctx := context.Background()
	if err := sample.Load(ctx, real, docs); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here until the proxy starts
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{"http://" + addr}, RequestTimeout: 5 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(esURL())
	proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		time.Sleep(2 * time.Second)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("proxy listen: %v", err)
			return
		}
		proxy.Serve(l)
	}()
	defer proxy.Close()
	h := newHarness(t, c, m, []string{s.Alias()}, nil)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := h.r.RunOnce(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != len(docs) {
		t.Fatalf("written %d of %d", res.Written, len(docs))
	}
	if n := testutil.ToFloat64(m.Passes.WithLabelValues(metrics.PathOnce, "error")); n == 0 {
		t.Fatal("no failed pass recorded while Elasticsearch was unreachable")
	}
}

// rawSource returns an alert's _source bytes as stored (real-time GET).
func rawSource(t testing.TB, c *elastic.Client, index, id string) json.RawMessage {
	t.Helper()
	code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/"+url.PathEscape(index)+"/_doc/"+url.PathEscape(id), nil, nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("get %s/%s: %v %s", index, id, err, body)
	}
	var r struct {
		Source json.RawMessage `json:"_source"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r.Source
}
