//go:build integration

package plugin_test

// Integration tests of plugins in the daemon: the example asset-inventory plugin (built by
// TestMain in host_test.go) runs as a real subprocess under a plugin.Host, in the daemon's
// pipeline (ATT&CK stage, then the plugin) driven by the runner (enrich/runner) over the
// Elasticsearch store against the real
// Elasticsearch at ELASTICSEARCH_URL (default http://127.0.0.1:9200; `make es-up`). Each
// test loads Kibana-like sample alerts into its own Kibana space (indices deleted
// afterwards) and checks the documents in Elasticsearch afterwards: whatever the plugin
// does, no alert is lost.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/plugin"
	"github.com/enricher-dev/enricher/rules"
)

const (
	itAlerts = 60 // alerts per test
	itBatch  = 20 // daemon batch size: 3 batches, so one plugin call can fail alone
)

// itCriticality is the criticality the test inventory gives each sample host.
var itCriticality = map[string]string{
	"WS-FIN-014": "high", "WS-HR-203": "medium", "DC01": "critical", "DC02": "critical",
	"FS-CORP-01": "high", "SQL-PROD-02": "critical", "WS-ENG-117": "low", "JUMP-01": "high",
}

func itESURL() string {
	if u := os.Getenv("ELASTICSEARCH_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:9200"
}

// itEnv is one test's Elasticsearch space, sample alerts and metrics.
type itEnv struct {
	c         *elastic.Client
	space     sample.KibanaSpace
	docs      []sample.Doc
	inventory string
	m         *metrics.Metrics
	pm        *metrics.PluginMetrics
}

// newITEnv creates a Kibana space with itAlerts sample alerts, removed after the test, an
// inventory CSV covering every sample host, and metrics on a fresh registry.
func newITEnv(t *testing.T, seed uint64) *itEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	env := &itEnv{m: metrics.New(reg), pm: metrics.NewPluginMetrics(reg)}
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{itESURL()}, RequestTimeout: 30 * time.Second}, env.m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if code, body, err := c.Do(ctx, "other", http.MethodGet, "/_cluster/health", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("no Elasticsearch at %s (start one with `make es-up`): %v %s", itESURL(), err, body)
	}
	env.c = c
	env.space = sample.KibanaSpace(fmt.Sprintf("plg%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000)))
	if err := sample.SetupKibana(ctx, c, env.space); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodDelete, "/.enricher-state-"+string(env.space), url.Values{"expand_wildcards": {"all"}}, nil)
		c.Do(ctx, "other", http.MethodDelete, "/.internal.alerts-security.alerts-"+string(env.space)+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
		c.Do(ctx, "other", http.MethodDelete, "/_index_template/"+url.PathEscape(env.space.Template()), nil, nil)
	})
	for _, d := range sample.Generate(itAlerts*2, seed) {
		if d.Index == sample.KibanaAlias && len(env.docs) < itAlerts {
			d.Index = env.space.Alias()
			env.docs = append(env.docs, d)
		}
	}
	if err := sample.Load(ctx, c, env.docs); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("hostname,criticality,owner,business_unit\n")
	for h, crit := range itCriticality {
		fmt.Fprintf(&csv, "%s,%s,owner-%s@example.com,BU-%s\n", h, crit, strings.ToLower(h), h)
	}
	env.inventory = filepath.Join(t.TempDir(), "assets.csv")
	if err := os.WriteFile(env.inventory, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return env
}

// pluginCfg is the daemon's config of the asset plugin, with test knobs.
func (env *itEnv) pluginCfg(required bool, timeout time.Duration, knobs map[string]any) config.Plugin {
	cfg := map[string]any{"inventory": env.inventory}
	for k, v := range knobs {
		cfg[k] = v
	}
	return config.Plugin{Name: "asset", Path: pluginBin, SHA256: pluginSum, Timeout: timeout, Required: required, Config: cfg}
}

// startPlugin starts the plugin as the daemon does (plugin.NewHost) and stops it after
// the test.
func (env *itEnv) startPlugin(t *testing.T, cfg config.Plugin) *plugin.Host {
	t.Helper()
	log, _ := newLogger(t)
	h, err := plugin.NewHost(t.Context(), cfg, log, env.pm)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

// enricher assembles the daemon's pipeline (ATT&CK stage, required, then the plugin) and
// its runner over the test's space, with a state index of its own.
func (env *itEnv) enricher(t *testing.T, h *plugin.Host, required bool) *runner.Runner {
	t.Helper()
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true})
	log, _ := newLogger(t)
	p, err := enrich.NewPipeline([]enrich.PipelineStage{{Stage: attack, Required: true}, {Stage: h, Required: required}},
		"attack_mappings", env.m, log)
	if err != nil {
		t.Fatal(err)
	}
	store := elastic.NewStore(env.c, elastic.StoreOptions{Indices: []string{env.space.Alias()}, InstallMappings: true,
		MaxRequestItems: itBatch, Namespaces: map[string]map[string]any{"asset": elastic.PluginNamespaceMapping()}}, log)
	state := elastic.NewState(env.c, ".enricher-state-"+string(env.space), []string{env.space.Alias()}, "test")
	return runner.New(store, state, p, runner.Options{
		BatchSize: itBatch, MaxRetries: 5, MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second,
		PollInterval: time.Second, LiveWindow: time.Hour, SweepInterval: time.Hour, IndexRetry: time.Minute,
		ShutdownTimeout: 10 * time.Second, TechniqueFields: enrich.DefaultFields, Settle: time.Second,
	}, env.m, log)
}

// itDoc is one alert as stored in Elasticsearch.
type itDoc struct {
	ID     string
	Source map[string]any
}

// stored returns every alert of the space, checking that none is missing.
func (env *itEnv) stored(t *testing.T) []itDoc {
	t.Helper()
	sample.Refresh(context.Background(), env.c, []string{env.space.Alias()})
	body, _ := json.Marshal(map[string]any{"size": 10000, "query": map[string]any{"match_all": map[string]any{}}})
	code, resp, err := env.c.Do(context.Background(), "search", http.MethodPost, "/"+url.PathEscape(env.space.Alias())+"/_search",
		url.Values{"expand_wildcards": {"open,hidden"}}, body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("search: %v %s", err, resp)
	}
	var r struct {
		Hits struct {
			Hits []struct {
				ID     string         `json:"_id"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	out := make([]itDoc, 0, len(r.Hits.Hits))
	for _, h := range r.Hits.Hits {
		out = append(out, itDoc{ID: h.ID, Source: h.Source})
	}
	if len(out) != len(env.docs) {
		t.Fatalf("%d alerts in Elasticsearch, %d loaded: alerts lost", len(out), len(env.docs))
	}
	return out
}

func (d itDoc) root() map[string]any {
	r, _ := d.Source["attack_mappings"].(map[string]any)
	return r
}

// attackDone: the ATT&CK stage's result is written (the ruleset it was computed with).
func (d itDoc) attackDone() bool { return d.root()["ruleset"] != nil }

// pending returns attack_mappings.pending_stages, nil when the field is absent.
func (d itDoc) pending() []string {
	v, ok := d.root()[enrich.PendingField]
	if !ok {
		return nil
	}
	out := []string{}
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func (d itDoc) hostName() string {
	h, _ := d.Source["host"].(map[string]any)
	s, _ := h["name"].(string)
	return s
}

func (d itDoc) asset() map[string]any {
	a, _ := d.Source["asset"].(map[string]any)
	return a
}

// checkComplete checks every alert carries both stages' results and nothing pending.
func (env *itEnv) checkComplete(t *testing.T) {
	t.Helper()
	for _, d := range env.stored(t) {
		if !d.attackDone() {
			t.Errorf("%s: no ATT&CK enrichment: %v", d.ID, d.root())
		}
		if p := d.pending(); p == nil || len(p) != 0 {
			t.Errorf("%s: pending_stages = %#v, want []", d.ID, p)
		}
		want := itCriticality[d.hostName()]
		if got := d.asset()["criticality"]; want == "" || got != want {
			t.Errorf("%s: host %q: asset.criticality = %v, want %q", d.ID, d.hostName(), got, want)
		}
		if got := d.asset()["owner"]; got != "owner-"+strings.ToLower(d.hostName())+"@example.com" {
			t.Errorf("%s: asset.owner = %v", d.ID, got)
		}
	}
}

// TestDaemonHealthyOptionalPlugin: a healthy optional plugin adds its namespace to every
// alert, beside the ATT&CK enrichment, with nothing left pending.
func TestDaemonHealthyOptionalPlugin(t *testing.T) {
	t.Parallel()
	env := newITEnv(t, 101)
	h := env.startPlugin(t, env.pluginCfg(false, 5*time.Second, nil))
	res, err := env.enricher(t, h, false).RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if res.Written != itAlerts || res.Partial != 0 || res.Deferred != 0 || res.Failed != 0 || res.Quarantined != 0 {
		t.Fatalf("result %+v, want %d written, nothing partial, deferred, failed or quarantined", res, itAlerts)
	}
	env.checkComplete(t)
	if n := value(t, env.pm.Calls.WithLabelValues("asset", metrics.PluginResultOK)); n != itAlerts/itBatch {
		t.Errorf("plugin calls ok = %v, want %d (one per batch)", n, itAlerts/itBatch)
	}
	if n := value(t, env.m.AlertsProcessed.WithLabelValues(metrics.PathOnce, "partial")); n != 0 {
		t.Errorf("alerts partial = %v", n)
	}
	if up := value(t, env.pm.Up.WithLabelValues("asset")); up != 1 {
		t.Errorf("plugin up = %v", up)
	}
}

// TestDaemonPluginCrashMidBatch: the plugin process exits in the middle of its second call
// (of each process). The host restarts it and resends the batch; the run completes with
// every alert enriched by both stages. The runner keeps two batches in flight, so one
// crash can fail two calls (one restart for both), and a batch whose every attempt met a
// crashing process is left pending and enriched by a later pass.
func TestDaemonPluginCrashMidBatch(t *testing.T) {
	t.Parallel()
	env := newITEnv(t, 102)
	h := env.startPlugin(t, env.pluginCfg(false, 5*time.Second, map[string]any{"crash_after_calls": 1}))
	res, err := env.enricher(t, h, false).RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if res.Written != itAlerts || res.Partial != 0 {
		t.Fatalf("result %+v, want %d written, none partial", res, itAlerts)
	}
	env.checkComplete(t)
	restarts := value(t, env.pm.Restarts.WithLabelValues("asset"))
	crashes := value(t, env.pm.Calls.WithLabelValues("asset", metrics.PluginResultCrash))
	if restarts < 1 || crashes < restarts || crashes > 2*(restarts+1) {
		t.Errorf("restarts = %v, crashed calls = %v; want at least one restart, and each crash failing at most the two calls in flight", restarts, crashes)
	}
	t.Logf("%v crashes, %v restarts", crashes, restarts)
}

// TestDaemonPluginHang: every plugin process hangs at its second call. The host gives up
// after the 2 s timeout, kills and restarts the process; the pipeline sends the batch
// again in halves (a hang may come from one alert), and as a lone alert that hangs once
// passes on its second try, no alert is blamed: every alert ends enriched by both stages.
func TestDaemonPluginHang(t *testing.T) {
	t.Parallel()
	env := newITEnv(t, 103)
	h := env.startPlugin(t, env.pluginCfg(false, 2*time.Second, map[string]any{"hang_after_calls": 1}))
	start := time.Now()
	res, err := env.enricher(t, h, false).RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if d := time.Since(start); d > 90*time.Second {
		t.Errorf("run took %s", d)
	}
	// An alert whose lone retry also meets a slow restart is written without the
	// plugin's fields first and completed by a later sweep: written more than once,
	// never quarantined.
	if res.Written < itAlerts || res.Written-res.Partial != itAlerts || res.Quarantined != 0 {
		t.Fatalf("result %+v, want %d written, none quarantined", res, itAlerts)
	}
	env.checkComplete(t)
	if n := value(t, env.pm.Calls.WithLabelValues("asset", metrics.PluginResultTimeout)); n < 1 {
		t.Errorf("timed-out calls = %v, want >= 1", n)
	}
	if n := value(t, env.pm.Restarts.WithLabelValues("asset")); n < 1 {
		t.Errorf("restarts = %v, want >= 1", n)
	}
	t.Logf("run took %s", time.Since(start).Round(time.Millisecond))
}

// TestDaemonPluginWrongChecksum: a binary whose SHA-256 differs from the configured one
// is not started, with an error naming the plugin, its path and both checksums; the real
// daemon binary exits non-zero with that error and writes nothing.
func TestDaemonPluginWrongChecksum(t *testing.T) {
	t.Parallel()
	env := newITEnv(t, 104)
	cfg := env.pluginCfg(false, 5*time.Second, nil)
	cfg.SHA256 = strings.Repeat("0f", 32)
	wants := []string{`plugin "asset"`, pluginBin, "expected sha256 " + cfg.SHA256, "binary has " + pluginSum}

	_, err := plugin.NewHost(t.Context(), cfg, nil, env.pm)
	if !errors.Is(err, plugin.ErrChecksumMismatch) {
		t.Fatalf("NewHost: %v, want ErrChecksumMismatch", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("NewHost error %q lacks %q", err, w)
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "enricher")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/enricher-dev/enricher/cmd/enricher").CombinedOutput(); err != nil {
		t.Fatalf("build enricher: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	yml := fmt.Sprintf(`elasticsearch: {urls: [%q]}
alerts: {indices: [%q]}
daemon: {listen: %q, batch_size: 20}
plugins:
  - name: asset
    path: %q
    sha256: %s
    config: {inventory: %q}
`, itESURL(), env.space.Alias(), addr, pluginBin, cfg.SHA256, env.inventory)
	cfgPath := filepath.Join(dir, "enricher.yml")
	if err := os.WriteFile(cfgPath, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--once", "--config", cfgPath)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("enricher run --once: %v, want a non-zero exit:\n%s", err, out)
	}
	for _, w := range wants {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, d := range env.stored(t) {
		if d.Source["attack_mappings"] != nil || d.Source["asset"] != nil {
			t.Errorf("%s written by a daemon that should not have started", d.ID)
		}
	}
	t.Logf("exit status %d", ee.ExitCode())
}

// TestDaemonPluginForbiddenPatch: the plugin also writes a top-level "host" field. The
// patch is rejected and counted; nothing outside the namespace reaches Elasticsearch;
// the alerts get the ATT&CK stage and stay pending for the plugin.
func TestDaemonPluginForbiddenPatch(t *testing.T) {
	t.Parallel()
	env := newITEnv(t, 105)
	h := env.startPlugin(t, env.pluginCfg(false, 5*time.Second, map[string]any{"write_outside_namespace": true}))
	res, err := env.enricher(t, h, false).RunOnce(t.Context())
	// Every alert waits for the optional plugin, so the run ends without progress.
	if err == nil || !strings.Contains(err.Error(), "wait for an optional plugin") {
		t.Fatalf("RunOnce: %v, want alerts waiting for an optional plugin", err)
	}
	if res.Written != itAlerts || res.Partial != itAlerts {
		t.Fatalf("result %+v, want %d written, all waiting for the plugin", res, itAlerts)
	}
	loaded := map[string]string{}
	for _, d := range env.docs {
		loaded[d.ID] = d.Source["host"].(map[string]any)["name"].(string)
	}
	for _, d := range env.stored(t) {
		host, _ := d.Source["host"].(map[string]any)
		if _, bad := host["criticality"]; bad || d.Source["host.criticality"] != nil {
			t.Errorf("%s: forbidden host.criticality written: %v", d.ID, d.Source["host"])
		}
		if d.hostName() != loaded[d.ID] {
			t.Errorf("%s: host.name %q, loaded %q", d.ID, d.hostName(), loaded[d.ID])
		}
		if d.asset() != nil {
			t.Errorf("%s: asset written from a rejected patch: %v", d.ID, d.asset())
		}
		if !d.attackDone() {
			t.Errorf("%s: no ATT&CK enrichment", d.ID)
		}
		if p := d.pending(); !reflect.DeepEqual(p, []string{"asset"}) {
			t.Errorf("%s: pending_stages = %#v, want [asset]", d.ID, p)
		}
	}
	// The first sweep writes the alerts without the plugin; a later one asks the plugin
	// again for the pending stage of those its search sees as written already, gets the
	// same answer, and writes nothing. Under load a search may see only part of the
	// first sweep's writes (refresh), and some are asked in one more sweep (seen: 140 of
	// 60 alerts); the run still ends once a sweep makes no progress.
	if n := value(t, env.pm.PatchesRejected.WithLabelValues("asset")); n < itAlerts || n > 3*itAlerts {
		t.Errorf("enricher_plugin_patches_rejected_total = %v, want %d to %d", n, itAlerts, 3*itAlerts)
	}
	if n, p := value(t, env.m.PatchesRejected.WithLabelValues("asset")), value(t, env.pm.PatchesRejected.WithLabelValues("asset")); n != p {
		t.Errorf("enricher_patches_rejected_total = %v, plugin's count %v", n, p)
	}
	if n := value(t, env.m.AlertsProcessed.WithLabelValues(metrics.PathOnce, "partial")); n != itAlerts {
		t.Errorf("alerts partial = %v, want %d", n, itAlerts)
	}
}

// TestDaemonPluginDown: a plugin that can never answer. Optional, the alerts are written
// with the ATT&CK stage and pending_stages [asset]; required, nothing is written and
// RunOnce reports the alerts deferred. Either way, the daemon restarted with a healthy
// plugin enriches every alert.
func TestDaemonPluginDown(t *testing.T) {
	t.Parallel()
	t.Run("optional", func(t *testing.T) {
		t.Parallel()
		env := newITEnv(t, 106)
		// Every call crashes the process: three sends per batch, then backoff.
		h := env.startPlugin(t, env.pluginCfg(false, 5*time.Second, map[string]any{"crash_after_calls": 0}))
		res, err := env.enricher(t, h, false).RunOnce(t.Context())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d alerts wait for an optional plugin", itAlerts)) {
			t.Fatalf("RunOnce: %v, want %d alerts waiting for an optional plugin", err, itAlerts)
		}
		if res.Written != itAlerts || res.Partial != itAlerts || res.Deferred != 0 {
			t.Fatalf("result %+v, want %d written, all waiting for the plugin", res, itAlerts)
		}
		for _, d := range env.stored(t) {
			if !d.attackDone() || d.asset() != nil || !reflect.DeepEqual(d.pending(), []string{"asset"}) {
				t.Errorf("%s: ATT&CK %v, asset %v, pending_stages %#v; want ATT&CK, no asset, [asset]",
					d.ID, d.attackDone(), d.asset(), d.pending())
			}
		}
		if n := value(t, env.pm.Calls.WithLabelValues("asset", metrics.PluginResultCrash)); n < 3 {
			t.Errorf("crashed calls = %v, want >= 3 (one batch sent three times)", n)
		}
		if n := value(t, env.m.AlertsProcessed.WithLabelValues(metrics.PathOnce, "partial")); n != itAlerts {
			t.Errorf("alerts partial = %v, want %d", n, itAlerts)
		}
		if up := value(t, env.pm.Up.WithLabelValues("asset")); up != 0 {
			t.Errorf("plugin up = %v, want 0", up)
		}
		_ = h.Close(context.Background())
		recoverWithHealthyPlugin(t, env, false)
	})
	t.Run("required", func(t *testing.T) {
		t.Parallel()
		env := newITEnv(t, 107)
		// The binary is replaced after the start (it crashes at every call, and every
		// restart fails its checksum): the process is down for good.
		bin := filepath.Join(t.TempDir(), "enricher-asset-inventory")
		b, err := os.ReadFile(pluginBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := env.pluginCfg(true, 5*time.Second, map[string]any{"crash_after_calls": 0})
		cfg.Path = bin
		h := env.startPlugin(t, cfg)
		if err := os.WriteFile(bin+".new", append(b, 0), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
		res, err := env.enricher(t, h, true).RunOnce(t.Context())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d alerts deferred", itAlerts)) {
			t.Fatalf("RunOnce: %v, want an error saying %d alerts remain deferred", err, itAlerts)
		}
		if res.Written != 0 || res.Deferred != itAlerts {
			t.Fatalf("result %+v, want nothing written, %d deferred", res, itAlerts)
		}
		for _, d := range env.stored(t) {
			if d.Source["attack_mappings"] != nil || d.asset() != nil {
				t.Errorf("%s written although its required plugin is down: %v", d.ID, d.Source["attack_mappings"])
			}
		}
		if n := value(t, env.m.AlertsProcessed.WithLabelValues(metrics.PathOnce, "deferred")); n != itAlerts {
			t.Errorf("alerts deferred = %v, want %d", n, itAlerts)
		}
		if n := value(t, env.pm.Calls.WithLabelValues("asset", metrics.PluginResultUnavailable)); n < 1 {
			t.Errorf("unavailable calls = %v, want > 0 (restart refused)", n)
		}
		if n := value(t, env.pm.Restarts.WithLabelValues("asset")); n != 0 {
			t.Errorf("restarts = %v, want 0 (every restart refused)", n)
		}
		_ = h.Close(context.Background())
		recoverWithHealthyPlugin(t, env, true)
	})
}

// recoverWithHealthyPlugin restarts "the daemon" with a healthy plugin and checks every
// alert ends enriched by both stages.
func recoverWithHealthyPlugin(t *testing.T, env *itEnv, required bool) {
	t.Helper()
	h := env.startPlugin(t, env.pluginCfg(required, 5*time.Second, nil))
	res, err := env.enricher(t, h, required).RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce with a healthy plugin: %v", err)
	}
	if res.Written != itAlerts || res.Partial != 0 || res.Deferred != 0 {
		t.Errorf("run with a healthy plugin: %+v, want all %d written", res, itAlerts)
	}
	env.checkComplete(t)
}
