//go:build integration

package dashboards

// Integration tests: every Kibana object, Grafana panel and alert rule is checked against
// real servers. The harness (started once, torn down in TestMain):
//
//   - Elasticsearch at ELASTICSEARCH_URL (default http://127.0.0.1:9200; `make es-up`).
//   - Sample alerts from enrich/sample in indices unique to this run, one per source
//     (a Kibana-like hidden alerts index behind .alerts-security.alerts-dash<id>,
//     logs-endpoint.alerts-dash<id>, wazuh-alerts-dash<id>, sigma-alerts-dash<id>), so
//     other tests using the shared sample indices are not disturbed; the mapping detail
//     index is enricher-mapping-details-dash<id> (output.details_index), and the data
//     view over enricher-mapping-details is checked against it. The daemon's state index
//     is .enricher-state-dash<id> too: a daemon sharing the state index removes the
//     details of all but the newest rulesets published, from whatever index they are in.
//   - bin/enricher built from this checkout, run as a daemon on a free port (with the
//     example asset-inventory plugin when the daemon can run plugins) and once more with
//     `run --once` after the daemon drained the indices. Its rules are the built-in
//     files (rules/builtin) plus testdata/acme-2.0_attack-16.1-enterprise.json: product
//     detections with comments and references, a parent technique's mapping (T1021) and
//     one under a revoked ID (T1077), so the mapping details have every field the
//     Kibana objects show.
//   - Prometheus (scripts/prom-up.sh, PROM_PORT = a free port) scraping the daemon every
//     1s with the alert rules loaded, while the daemon enriches the alerts.
//
// Environment: ELASTICSEARCH_URL; DASHBOARDS_KEEP=1 keeps the test indices.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

const sampleCount = 1000

type harness struct {
	root, tmp  string
	esURL      string
	enricher   string
	space      sample.KibanaSpace
	indices    []string // the alias for Kibana, concrete names for the rest
	details    string   // the mapping detail index the daemon publishes
	state      string   // the daemon's state index
	docIDs     map[string]bool
	daemon     *exec.Cmd
	daemonDone chan error
	daemonLog  string
	daemonAddr string
	config     string
	promPort   string
	promURL    string
	cleanups   []func()
}

var (
	h        *harness
	hErr     error
	hOnce    sync.Once
	teardown []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(teardown) - 1; i >= 0; i-- {
		teardown[i]()
	}
	os.Exit(code)
}

// env starts the harness once; every test that needs it fails with the same message.
func env(t *testing.T) *harness {
	t.Helper()
	hOnce.Do(func() {
		start := time.Now()
		h = &harness{}
		hErr = h.start()
		teardown = append(teardown, h.stop)
		if hErr == nil {
			fmt.Fprintf(os.Stderr, "dashboards: harness ready in %s (daemon %s with the asset plugin, Prometheus %s)\n",
				time.Since(start).Round(time.Millisecond), h.daemonAddr, h.promURL)
		}
	})
	if hErr != nil {
		t.Fatalf("test harness: %v", hErr)
	}
	return h
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p, nil
}

func (h *harness) start() error {
	var err error
	if h.root, err = filepath.Abs(".."); err != nil {
		return err
	}
	if h.tmp, err = os.MkdirTemp("", "enricher-dashboards-"); err != nil {
		return err
	}
	h.cleanups = append(h.cleanups, func() { os.RemoveAll(h.tmp) })
	h.esURL = strings.TrimRight(os.Getenv("ELASTICSEARCH_URL"), "/")
	if h.esURL == "" {
		h.esURL = "http://127.0.0.1:9200"
	}
	if code, body, err := h.es(http.MethodGet, "/_cluster/health", nil); err != nil || code != http.StatusOK {
		return fmt.Errorf("Elasticsearch is not reachable at %s (status %d, %v, %.200s): start it with `make es-up` (scripts/es-up.sh) or set ELASTICSEARCH_URL", h.esURL, code, err, body)
	}
	for _, tool := range []string{"promtool", "prometheus"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install Debian's prometheus package (scripts/prom-up.sh does it as root)", tool)
		}
	}

	// Binaries.
	h.enricher = filepath.Join(h.tmp, "enricher")
	if out, err := h.run(90*time.Second, nil, "go", "build", "-o", h.enricher, "./cmd/enricher"); err != nil {
		return fmt.Errorf("go build ./cmd/enricher: %v\n%s", err, out)
	}
	plugins, err := h.buildPlugin()
	if err != nil {
		return err
	}

	// Unique indices, created before the daemon so it installs its mappings on them.
	id := fmt.Sprintf("dash%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	h.space = sample.KibanaSpace(id)
	rename := map[string]string{
		sample.KibanaAlias:   h.space.Alias(),
		sample.EndpointIndex: "logs-endpoint.alerts-" + id,
		sample.WazuhIndex:    "wazuh-alerts-" + id,
		sample.Wazuh5Index:   "wazuh-findings-v5-" + id,
		sample.SigmaIndex:    "sigma-alerts-" + id,
	}
	h.indices = []string{rename[sample.KibanaAlias], rename[sample.EndpointIndex], rename[sample.WazuhIndex], rename[sample.Wazuh5Index], rename[sample.SigmaIndex]}
	h.details = config.DefaultDetailsIndex + "-" + id
	h.state = ".enricher-state-" + id
	h.cleanups = append(h.cleanups, h.deleteIndices)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := elastic.NewClient(config.Elasticsearch{URLs: []string{h.esURL}, RequestTimeout: 30 * time.Second}, nil)
	if err != nil {
		return err
	}
	if err := sample.SetupKibana(ctx, client, h.space); err != nil {
		return fmt.Errorf("create Kibana-like alerts index: %w", err)
	}
	for _, ix := range h.indices[1:] {
		b, _ := json.Marshal(map[string]any{"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0}})
		if code, body, err := h.es(http.MethodPut, "/"+ix, b); err != nil || code != http.StatusOK {
			return fmt.Errorf("create %s: status %d %v %.300s", ix, code, err, body)
		}
	}

	// Daemon, with the example plugin (required, so its metrics and the plugin alerts are exercised).
	port, err := freePort()
	if err != nil {
		return err
	}
	h.daemonAddr = "127.0.0.1:" + port
	if err := h.startDaemon(plugins); err != nil {
		return err
	}

	// Prometheus scraping the daemon every second, with the alert rules loaded.
	if h.promPort, err = freePort(); err != nil {
		return err
	}
	promCfg := filepath.Join(h.tmp, "prometheus.yml")
	rules, _ := filepath.Glob(filepath.Join(h.root, "dashboards", "prometheus", "*.yml"))
	var ruleFiles []string
	for _, r := range rules {
		if !strings.HasSuffix(r, ".test.yml") {
			ruleFiles = append(ruleFiles, fmt.Sprintf("%q", r))
		}
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: [%s]
scrape_configs:
  - job_name: enricher
    static_configs: [{targets: [%q]}]
`, strings.Join(ruleFiles, ", "), h.daemonAddr)
	if err := os.WriteFile(promCfg, []byte(cfg), 0o644); err != nil {
		return err
	}
	promEnv := []string{"PROM_PORT=" + h.promPort}
	h.cleanups = append(h.cleanups, func() {
		if out, err := h.run(40*time.Second, promEnv, "bash", "scripts/prom-down.sh"); err != nil {
			fmt.Fprintf(os.Stderr, "dashboards: prom-down: %v\n%s", err, out)
			return
		}
		// prom-down.sh leaves the per-port run dir (log, config path); ports are random here.
		cache := os.Getenv("ENRICHER_CACHE")
		if cache == "" {
			if home, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(home, ".cache", "enricher")
			}
		}
		if cache != "" {
			os.RemoveAll(filepath.Join(cache, "run", "prom-"+h.promPort))
		}
	})
	out, err := h.run(90*time.Second, promEnv, "bash", "scripts/prom-up.sh", promCfg)
	if err != nil {
		return fmt.Errorf("scripts/prom-up.sh: %v\n%s", err, out)
	}
	h.promURL = "http://127.0.0.1:" + h.promPort

	// Load the alerts while the daemon runs and Prometheus scrapes it.
	docs := sample.Generate(sampleCount, 1)
	h.docIDs = map[string]bool{}
	for i := range docs {
		docs[i].Index = rename[docs[i].Index]
		h.docIDs[docs[i].ID] = true
	}
	// One alert larger than daemon.max_alert_bytes: quarantined at once, so the
	// quarantined-alerts search has something to show.
	big := sample.Doc{Index: docs[0].Index, ID: "oversized-alert", Source: map[string]any{}}
	for k, v := range docs[0].Source {
		big.Source[k] = v
	}
	big.Source["message"] = strings.Repeat("x", 2*maxAlertBytes)
	docs = append(docs, big)
	h.docIDs[big.ID] = true
	if err := sample.Load(ctx, client, docs); err != nil {
		return fmt.Errorf("load sample alerts: %w", err)
	}
	if err := h.waitDrained(60 * time.Second); err != nil {
		return err
	}
	// The one-shot mode on the same indices: must succeed, with nothing left to do.
	once, err := freePort()
	if err != nil {
		return err
	}
	if out, err := h.run(60*time.Second, nil, h.enricher, "run", "--once", "--config", h.config, "--listen", "127.0.0.1:"+once); err != nil {
		return fmt.Errorf("enricher run --once: %v\n%s", err, out)
	}
	if code, body, err := h.es(http.MethodPost, "/"+strings.Join(h.indices, ",")+","+h.details+"/_refresh?expand_wildcards=open,hidden", nil); err != nil || code != http.StatusOK {
		log, _ := os.ReadFile(h.daemonLog)
		return fmt.Errorf("refresh (the daemon publishes the mapping detail index %s on its first pass): %d %v %.200s\ndaemon log:\n%s", h.details, code, err, body, log)
	}
	// Prometheus has seen the whole run once it reports every alert processed.
	return h.waitProm(fmt.Sprintf(`sum(enricher_alerts_processed_total) >= %d`, sampleCount), 30*time.Second)
}

// buildPlugin builds the example asset-inventory plugin and returns its config block.
func (h *harness) buildPlugin() ([]map[string]any, error) {
	dir := filepath.Join(h.root, "plugin", "examples", "assetinventory")
	bin := filepath.Join(h.tmp, "enricher-asset-inventory")
	if out, err := h.run(90*time.Second, nil, "go", "build", "-o", bin, "./plugin/examples/assetinventory/cmd/enricher-asset-inventory"); err != nil {
		return nil, fmt.Errorf("go build the example plugin: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return []map[string]any{{
		"name": "asset", "path": bin, "sha256": hex.EncodeToString(sum[:]), "required": true,
		"config": map[string]any{
			"inventory":           filepath.Join(dir, "testdata", "inventory.csv"),
			"unknown_criticality": "unknown",
		},
	}}, nil
}

// maxAlertBytes is the daemon's daemon.max_alert_bytes here: above every sample alert.
const maxAlertBytes = 256 << 10

// ruleSources are the daemon's rules: the built-in files and the dashboards' own CTID file.
func (h *harness) ruleSources() ([]string, error) {
	builtin, _ := filepath.Glob(filepath.Join(h.root, "rules", "builtin", "*.yaml"))
	if len(builtin) == 0 {
		return nil, fmt.Errorf("no rules/builtin/*.yaml under %s", h.root)
	}
	return append(builtin, filepath.Join(h.root, "dashboards", "testdata", "acme-2.0_attack-16.1-enterprise.json")), nil
}

func (h *harness) startDaemon(plugins []map[string]any) error {
	sources, err := h.ruleSources()
	if err != nil {
		return err
	}
	cfg := map[string]any{
		"elasticsearch": map[string]any{"urls": []string{h.esURL}},
		"rules":         map[string]any{"sources": sources},
		"alerts":        map[string]any{"indices": h.indices},
		"output":        map[string]any{"details_index": h.details},
		// The sample alerts (loaded after the start) span two hours: all are the live path's.
		"daemon": map[string]any{"listen": h.daemonAddr, "poll_interval": "1s", "live_window": "24h", "max_alert_bytes": maxAlertBytes,
			"state_index": h.state},
	}
	if plugins != nil {
		cfg["plugins"] = plugins
	}
	b, _ := json.Marshal(cfg) // JSON is YAML
	h.config = filepath.Join(h.tmp, "enricher.yml")
	if err := os.WriteFile(h.config, b, 0o644); err != nil {
		return err
	}
	h.daemonLog = filepath.Join(h.tmp, "daemon.log")
	logf, err := os.Create(h.daemonLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(h.enricher, "run", "--config", h.config)
	cmd.Dir, cmd.Stdout, cmd.Stderr = h.root, logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			log, _ := os.ReadFile(h.daemonLog)
			return fmt.Errorf("daemon exited at start (%v):\n%s", err, log)
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + h.daemonAddr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				h.daemon, h.daemonDone = cmd, done
				return nil
			}
		}
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("daemon did not answer /healthz on %s within 20s", h.daemonAddr)
}

func (h *harness) stop() {
	if h.daemon != nil {
		_ = h.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.daemonDone:
		case <-time.After(15 * time.Second):
			_ = h.daemon.Process.Kill()
			<-h.daemonDone
		}
	}
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
}

func (h *harness) deleteIndices() {
	if os.Getenv("DASHBOARDS_KEEP") == "1" || h.space == "" {
		return
	}
	h.es(http.MethodDelete, "/"+h.space.Backing()+","+strings.Join(h.indices[1:], ",")+","+h.details+","+h.state+"?ignore_unavailable=true&expand_wildcards=open,hidden", nil)
	h.es(http.MethodDelete, "/_index_template/"+url.PathEscape(h.space.Template()), nil)
}

// run runs a command in the repository root and returns its combined output.
func (h *harness) run(timeout time.Duration, extraEnv []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out, err
}

func (h *harness) es(method, path string, body []byte) (int, []byte, error) {
	return send(h.esURL, os.Getenv("ELASTICSEARCH_USERNAME"), os.Getenv("ELASTICSEARCH_PASSWORD"), method, path, body)
}

// scrape returns the daemon's metric families.
func (h *harness) scrape() (map[string]*dto.MetricFamily, []byte, error) {
	resp, err := http.Get("http://" + h.daemonAddr + "/metrics")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	return mfs, b, err
}

func sumOf(mf *dto.MetricFamily) float64 {
	var s float64
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		}
	}
	return s
}

// waitDrained waits until the daemon processed every sample alert and nothing is pending.
func (h *harness) waitDrained(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-h.daemonDone:
			log, _ := os.ReadFile(h.daemonLog)
			h.daemon = nil
			return fmt.Errorf("daemon exited (%v):\n%s", err, log)
		case <-time.After(500 * time.Millisecond):
		}
		mfs, _, err := h.scrape()
		if err != nil {
			last = err.Error()
			continue
		}
		processed := sumOf(mfs["enricher_alerts_processed_total"])
		pending := sumOf(mfs["enricher_pending_alerts"])
		last = fmt.Sprintf("processed %v, pending %v", processed, pending)
		if processed >= sampleCount && pending == 0 {
			return nil
		}
	}
	log, _ := os.ReadFile(h.daemonLog)
	return fmt.Errorf("the daemon did not enrich %d alerts within %s (%s); log:\n%s", sampleCount, timeout, last, log)
}

// promQuery runs an instant query and returns the result vector (or matrix) length.
func (h *harness) promQuery(q string) (int, string, error) {
	resp, err := http.Get(h.promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, "", fmt.Errorf("decode %.200s: %w", b, err)
	}
	if r.Status != "success" {
		return 0, "", fmt.Errorf("query %q: %s", q, r.Error)
	}
	if r.Data.ResultType == "scalar" {
		return 1, string(b), nil
	}
	return len(r.Data.Result), string(b), nil
}

func (h *harness) waitProm(q string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, _, err := h.promQuery(q)
		if err == nil && n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Prometheus at %s: %q returned no series within %s (%v)", h.promURL, q, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// expectSeries fails unless q returns at least one series, retrying for a few seconds
// (rate() needs two samples in its window).
func (h *harness) expectSeries(t *testing.T, q string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _, err := h.promQuery(q)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q returned no series", q)
		}
		time.Sleep(time.Second)
	}
}

// ---- Prometheus ----

// TestPromtoolRules runs promtool check rules on every rule file and promtool test rules
// on every rule test file (each alert firing and not firing).
func TestPromtoolRules(t *testing.T) {
	rules, _ := filepath.Glob("prometheus/*.yml")
	var ruleFiles, tests []string
	for _, f := range rules {
		if strings.HasSuffix(f, ".test.yml") {
			tests = append(tests, f)
		} else {
			ruleFiles = append(ruleFiles, f)
		}
	}
	if len(ruleFiles) == 0 || len(tests) == 0 {
		t.Fatalf("want rule files and rule tests in prometheus/, got %v and %v", ruleFiles, tests)
	}
	for _, args := range [][]string{append([]string{"check", "rules"}, ruleFiles...), append([]string{"test", "rules"}, tests...)} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a unit test.
	var tested = map[string]bool{}
	for _, f := range tests {
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`alertname:\s*(\S+)`).FindAllStringSubmatch(string(b), -1) {
			tested[m[1]] = true
		}
	}
	for _, r := range loadRules(t) {
		if !tested[r.Alert] {
			t.Errorf("alert %s has no promtool unit test", r.Alert)
		}
	}
}

// TestPrometheusScrapesDaemon checks that the real Prometheus scrapes the daemon and
// loaded the alert rules without errors.
func TestPrometheusScrapesDaemon(t *testing.T) {
	h := env(t)
	h.expectSeries(t, `up{job="enricher"} == 1`)
	resp, err := http.Get(h.promURL + "/api/v1/rules?type=alert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			loaded++
			if rule.Health == "err" {
				t.Errorf("rule %s: %s", rule.Name, rule.LastError)
			}
		}
	}
	if want := len(loadRules(t)); loaded != want {
		t.Errorf("Prometheus loaded %d alert rules, want %d", loaded, want)
	}
}

// TestGrafanaExpressionsReturnSeries runs every Grafana target (and variable selector),
// with the dashboard variables substituted, against the Prometheus that scraped the run.
func TestGrafanaExpressionsReturnSeries(t *testing.T) {
	h := env(t)
	for _, tg := range loadGrafana(t) {
		t.Run(tg.Panel, func(t *testing.T) {
			q, err := SubstituteVars(tg.Expr, GrafanaVars("enricher"))
			if err != nil {
				t.Fatal(err)
			}
			h.expectSeries(t, q)
		})
	}
}

// TestAlertRuleExpressionsReturnSeries runs the inner vectors of every alert expression
// (InnerExprs: operands of and/or/unless, threshold comparison removed) and checks each
// returns at least one series, so no rule is silently built on a missing metric or label.
func TestAlertRuleExpressionsReturnSeries(t *testing.T) {
	h := env(t)
	for _, r := range loadRules(t) {
		for i, in := range InnerExprs(r.Expr) {
			t.Run(fmt.Sprintf("%s/%d", r.Alert, i), func(t *testing.T) {
				h.expectSeries(t, in)
			})
		}
	}
}

// TestMetricsScrapeLint runs promtool check metrics on a real scrape and checks the
// naming guide points promtool does not: one namespace, snake_case, _total only on
// counters, base units.
func TestMetricsScrapeLint(t *testing.T) {
	h := env(t)
	mfs, raw, err := h.scrape()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	reName := regexp.MustCompile(`^enricher_[a-z][a-z0-9_]*[a-z0-9]$`)
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "enricher_") {
			continue // go_*, process_*, promhttp_* from the standard collectors
		}
		if !reName.MatchString(name) || strings.Contains(name, "__") {
			t.Errorf("%s: not snake_case under the enricher_ namespace", name)
		}
		isCounter := mf.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s (%s): _total is for counters and every counter", name, mf.GetType())
		}
		for _, bad := range []string{"_milliseconds", "_ms", "_minutes", "_bytes_total_bytes", "_percent"} {
			if strings.HasSuffix(strings.TrimSuffix(name, "_total"), bad) {
				t.Errorf("%s: use base units (seconds, bytes, ratios)", name)
			}
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no HELP", name)
		}
	}
}

// TestMetricLabelValuesHaveNoIDs scrapes /metrics after the run and checks that no label
// value is a technique ID or looks like (or is) an alert document ID.
func TestMetricLabelValuesHaveNoIDs(t *testing.T) {
	h := env(t)
	mfs, _, err := h.scrape()
	if err != nil {
		t.Fatal(err)
	}
	reTechnique := regexp.MustCompile(`(?i)^T\d{4}`)
	reUUID := regexp.MustCompile(`(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	reESID := regexp.MustCompile(`^[A-Za-z0-9_-]{20}$`) // Elasticsearch auto-generated _id
	reLongHex := regexp.MustCompile(`(?i)^[0-9a-f]{16,}$`)
	checked := 0
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				v := lp.GetValue()
				checked++
				switch {
				case reTechnique.MatchString(v):
					t.Errorf("%s{%s=%q}: technique ID in a label value", name, lp.GetName(), v)
				case h.docIDs[v], strings.HasPrefix(v, "sample-"):
					t.Errorf("%s{%s=%q}: alert document ID in a label value", name, lp.GetName(), v)
				case reUUID.MatchString(v), reLongHex.MatchString(v),
					reESID.MatchString(v) && strings.ContainsAny(v, "0123456789") && strings.ToLower(v) != v:
					t.Errorf("%s{%s=%q}: label value looks like a document ID", name, lp.GetName(), v)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no labelled series in the scrape")
	}
}

// ---- Kibana ----

// viewIndices returns the test indices a data view covers (coveredIndices).
func (h *harness) viewIndices(t *testing.T, dv DataView) []string {
	t.Helper()
	return coveredIndices(t, dv, h.indices, h.details)
}

// TestKibanaFieldsInRealMapping checks that every field a Kibana object references (data
// view time field, field labels and field formats, saved-search columns, sort and KQL
// fields, Lens columns, the KQL of the links a field format renders) is mapped in the
// test indices its data view covers, with one type across them (no Kibana "conflict")
// that fits the use: keyword for string terms, date for time fields and date
// histograms, doc values for sorts, indexed for queries. And that the daemon, which
// writes the default (compact) shape here, wrote it: at least one document of those
// indices has a value, so no object is built on a field only output.detail: full writes.
func TestKibanaFieldsInRealMapping(t *testing.T) {
	h := env(t)
	views, uses, _, errs := Plan(loadKibana(t))
	if len(errs) > 0 {
		t.Fatalf("saved objects: %v", errors.Join(errs...))
	}
	for id, us := range usesByView(uses) {
		dv := views[id]
		checkFieldUses(t, h.es, dv, h.viewIndices(t, dv), us)
	}
}

// TestKibanaQueriesReturnData runs every saved search and every Lens layer as the
// Elasticsearch query Kibana would send (KQL translated, terms/date_histogram nested in
// column order, count = doc_count) on the enriched test indices, and checks the result
// is not empty: each bucket level has a non-empty bucket, and each saved-search column
// has a value in at least one of the first 100 hits.
func TestKibanaQueriesReturnData(t *testing.T) {
	h := env(t)
	views, _, queries, errs := Plan(loadKibana(t))
	if len(errs) > 0 {
		t.Fatalf("saved objects: %v", errors.Join(errs...))
	}
	for _, q := range queries {
		t.Run(q.Title, func(t *testing.T) {
			body := q.Body()
			if len(q.Buckets) == 0 {
				body["size"] = 100
			}
			dv := views[q.DataView]
			checkQueryReturnsData(t, h.es, searchPath(dv, h.viewIndices(t, dv)), q, body)
		})
	}
}

// TestKibanaDetailLinksResolve follows every link a URL field format of a data view
// renders (the alert data views link attack_mappings.details to the mapping details),
// with the real values the daemon wrote: each distinct value in the enriched alerts is
// expanded as Kibana's UrlFormat expands it ({{value}} URL-encoded), resolved in a
// Kibana with and without a base path and space, read back as Discover reads it (saved
// search from #/view/<id>, its data view, the query from the rison _a), and the KQL run
// on the search's data view. It must return the mapping detail documents of that
// technique in that ruleset: some, every one with ref equal to the value and the
// technique before its @; and, for an alert carrying the value, the documents its
// values open must hold every control ID (capability_id of kind control) and every
// detection product (name of kind detection) the alert shows.
func TestKibanaDetailLinksResolve(t *testing.T) {
	h := env(t)
	objs := loadKibana(t)
	views, _, _, errs := Plan(objs)
	if len(errs) > 0 {
		t.Fatalf("saved objects: %v", errors.Join(errs...))
	}
	searches := SearchDataViews(objs)
	ids := make([]string, 0, len(views))
	for id := range views {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	links := 0
	for _, id := range ids {
		for _, l := range views[id].Links {
			links++
			t.Run(id+"/"+l.Field, func(t *testing.T) {
				h.checkLink(t, views, searches, l)
			})
		}
	}
	if links < 2 {
		t.Fatalf("want the details link on both alert data views, found %d links", links)
	}
}

// detailSet is what the documents a details value opens hold.
type detailSet struct {
	controls, products map[string]bool
	hits               int
}

func (h *harness) checkLink(t *testing.T, views map[string]DataView, searches map[string]string, l Link) {
	dv := views[l.DataView]
	root := strings.SplitN(l.Field, ".", 2)[0]
	// Every distinct value of the field, each with one alert that carries it.
	body, _ := json.Marshal(map[string]any{
		"size": 0, "query": map[string]any{"exists": map[string]any{"field": l.Field}},
		"aggs": map[string]any{"v": map[string]any{
			"terms": map[string]any{"field": l.Field, "size": 1000},
			"aggs":  map[string]any{"alert": map[string]any{"top_hits": map[string]any{"size": 1, "_source": []string{root}}}},
		}},
	})
	var r struct {
		Aggregations struct {
			V struct {
				SumOther int `json:"sum_other_doc_count"`
				Buckets  []struct {
					Key   string `json:"key"`
					Alert struct {
						Hits struct {
							Hits []struct {
								ID     string                    `json:"_id"`
								Source map[string]map[string]any `json:"_source"`
							} `json:"hits"`
						} `json:"hits"`
					} `json:"alert"`
				} `json:"buckets"`
			} `json:"v"`
		} `json:"aggregations"`
	}
	search(t, h.es, searchPath(dv, h.viewIndices(t, dv)), body, &r)
	buckets := r.Aggregations.V.Buckets
	if len(buckets) == 0 {
		t.Fatalf("no enriched alert of data view %s has a value of %s", l.DataView, l.Field)
	}
	if r.Aggregations.V.SumOther > 0 {
		t.Errorf("more than %d distinct values of %s: some were not followed", len(buckets), l.Field)
	}
	opened := map[string]*detailSet{}
	open := func(value string) *detailSet {
		if s, ok := opened[value]; ok {
			return s
		}
		s := h.followLink(t, views, searches, l, value)
		opened[value] = s
		return s
	}
	for _, b := range buckets {
		open(b.Key)
		if len(b.Alert.Hits.Hits) != 1 {
			t.Fatalf("value %s: no alert in top_hits", b.Key)
		}
		alert := b.Alert.Hits.Hits[0]
		am := alert.Source[root]
		// The union of what the alert's details values open.
		controls, products := map[string]bool{}, map[string]bool{}
		for _, v := range strs(am[strings.TrimPrefix(l.Field, root+".")]) {
			s := open(v)
			for c := range s.controls {
				controls[c] = true
			}
			for p := range s.products {
				products[p] = true
			}
		}
		groups, _ := am["controls"].([]any)
		for _, g := range groups {
			gm, _ := g.(map[string]any)
			for _, id := range strs(gm["id"]) {
				if !controls[id] {
					t.Errorf("alert %s: control %s is in none of the mapping details its values %v open", alert.ID, id, am["details"])
				}
			}
		}
		dets, _ := am["detections"].([]any)
		for _, d := range dets {
			dm, _ := d.(map[string]any)
			p, _ := dm["product"].(string)
			if !products[p] {
				t.Errorf("alert %s: detection product %q is in none of the mapping details its values %v open", alert.ID, p, am["details"])
			}
		}
	}
	total := 0
	for _, s := range opened {
		total += s.hits
	}
	t.Logf("%s: %d distinct values followed, %d mapping detail documents opened", l.Field, len(opened), total)
}

// followLink resolves the link for one value and runs the query Discover would run.
func (h *harness) followLink(t *testing.T, views map[string]DataView, searches map[string]string, l Link, value string) *detailSet {
	t.Helper()
	out := &detailSet{controls: map[string]bool{}, products: map[string]bool{}}
	if label := l.ExpandLabel(value); !strings.Contains(label, value) {
		t.Errorf("value %s: the link reads %q, not the value", value, label)
	}
	q, err := l.Resolve(value, searches)
	if err != nil {
		t.Errorf("value %s: %v", value, err)
		return out
	}
	if q.Object != "search/"+l.SavedSearch {
		t.Errorf("value %s opens %s, not %s", value, q.Object, l.SavedSearch)
	}
	target, ok := views[q.DataView]
	if !ok {
		t.Errorf("value %s: the search's data view %s is not in the files", value, q.DataView)
		return out
	}
	body, _ := json.Marshal(map[string]any{"query": q.KQL.ES(), "size": 10000, "track_total_hits": true,
		"_source": []string{"ref", "technique", "kind", "capability_id", "name"}})
	var r struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source struct {
					Ref          string `json:"ref"`
					Technique    string `json:"technique"`
					Kind         string `json:"kind"`
					CapabilityID string `json:"capability_id"`
					Name         string `json:"name"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	search(t, h.es, searchPath(target, h.viewIndices(t, target)), body, &r)
	if len(r.Hits.Hits) == 0 {
		t.Errorf("value %s: query %s on %s returns no mapping details", value, q.Title, target.Title)
		return out
	}
	if r.Hits.Total.Value != len(r.Hits.Hits) {
		t.Errorf("value %s: %d hits, %d read", value, r.Hits.Total.Value, len(r.Hits.Hits))
	}
	technique, _, _ := strings.Cut(value, "@")
	for _, hit := range r.Hits.Hits {
		d := hit.Source
		if d.Ref != value || d.Technique != technique {
			t.Errorf("value %s: query %s returns a document of ref %q, technique %q", value, q.Title, d.Ref, d.Technique)
			continue
		}
		switch d.Kind {
		case "control":
			out.controls[d.CapabilityID] = true
		case "detection":
			out.products[d.Name] = true
		}
	}
	out.hits = len(r.Hits.Hits)
	return out
}

// strs returns the strings of a JSON value: a string or an array of strings.
func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
