package plugin_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/plugin"
	"github.com/enricher-dev/enricher/plugin/examples/assetinventory"
)

// The example plugin, built once by TestMain.
var (
	pluginBin string
	pluginSum string
	inventory string
)

func TestMain(m *testing.M) {
	if os.Getenv(plugin.Handshake.MagicCookieKey) != "" {
		// Started by a host as a helper process (TestHelperProcess): build nothing.
		os.Exit(m.Run())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "enricher-plugin-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	pluginBin = filepath.Join(dir, "enricher-asset-inventory")
	build := exec.Command("go", "build", "-o", pluginBin, "github.com/enricher-dev/enricher/plugin/examples/assetinventory/cmd/enricher-asset-inventory")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build example plugin:", err)
		return 1
	}
	if pluginSum, err = fileSHA256(pluginBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if inventory, err = filepath.Abs("examples/assetinventory/testdata/inventory.csv"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestHelperProcess is not a test: hosts in TestBadHandshake start the test binary
// itself, which lands here and misbehaves as asked after "--".
func TestHelperProcess(t *testing.T) {
	if os.Getenv(plugin.Handshake.MagicCookieKey) == "" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		os.Exit(2)
	}
	switch args[1] {
	case "wrong-version": // a plugin built for protocol version 99
		fmt.Println("1|99|tcp|127.0.0.1:1|grpc")
		time.Sleep(5 * time.Second)
	case "netrpc": // a net/rpc plugin
		fmt.Printf("1|%d|tcp|127.0.0.1:1|netrpc\n", plugin.ProtocolVersion)
		time.Sleep(5 * time.Second)
	case "not-a-plugin":
		fmt.Println("hello, I am not a plugin")
	case "exit":
	}
	os.Exit(0)
}

func pluginConfig(knobs map[string]any) config.Plugin {
	cfg := map[string]any{"inventory": inventory}
	for k, v := range knobs {
		cfg[k] = v
	}
	return config.Plugin{Name: "asset", Path: pluginBin, SHA256: pluginSum, Timeout: 5 * time.Second, Config: cfg}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func startHost(t testing.TB, cfg config.Plugin) (*plugin.Host, *metrics.PluginMetrics, *logBuffer) {
	t.Helper()
	log, logs := newLogger(t)
	m := metrics.NewPluginMetrics(prometheus.NewRegistry())
	h, err := plugin.NewHost(t.Context(), cfg, log, m)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	h.SetBackoff(20*time.Millisecond, time.Second)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h, m, logs
}

func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	t.Fatalf("unsupported metric %v", &d)
	return 0
}

func calls(t *testing.T, m *metrics.PluginMetrics, result string) float64 {
	return value(t, m.Calls.WithLabelValues("asset", result))
}

// testAlerts cover each way of matching and a miss.
func testAlerts() []*enrich.Alert {
	return []*enrich.Alert{
		{ID: "a1", Index: "i", Source: map[string]any{"host": map[string]any{"name": "WS-0142.CORP.example.com"}}},
		{ID: "a2", Index: "i", Source: map[string]any{"host.hostname": "dc01.corp.example.com", "host.name": "unknown"}},
		{ID: "a3", Index: "i", Source: map[string]any{"host": map[string]any{"name": "web01.corp.example.com"}}},
		{ID: "a4", Index: "i", Source: map[string]any{"host": map[string]any{"name": "laptop-99"}}},
		{ID: "a5", Index: "i", Source: map[string]any{"user": map[string]any{"name": "alice"}}},
	}
}

func wantPatches() []enrich.Patch {
	return []enrich.Patch{
		{"asset": map[string]any{"host": "WS-0142.corp.example.com", "criticality": "high", "owner": "alice@example.com", "business_unit": "Finance", "matched_on": "host.name"}},
		{"asset": map[string]any{"host": "dc01.corp.example.com", "criticality": "critical", "owner": "it-infra@example.com", "business_unit": "IT", "matched_on": "host.hostname"}},
		{"asset": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.name"}},
		nil,
		nil,
	}
}

func TestEnrich(t *testing.T) {
	cfg := pluginConfig(nil)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (*plugin.Host, *metrics.PluginMetrics)
	}{
		{name: "in-process", start: func(t *testing.T) (*plugin.Host, *metrics.PluginMetrics) {
			log, _ := newLogger(t)
			m := metrics.NewPluginMetrics(prometheus.NewRegistry())
			h, _, err := plugin.NewInProcessHost(t.Context(), t, cfg, assetinventory.New(nil), log, m)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			return h, m
		}},
		{name: "subprocess", start: func(t *testing.T) (*plugin.Host, *metrics.PluginMetrics) {
			h, m, _ := startHost(t, cfg)
			return h, m
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m := tc.start(t)
			if h.Name() != "asset" || h.Namespace() != "asset" || !reflect.DeepEqual(h.Fields(), []string{"host.name", "host.hostname"}) {
				t.Errorf("stage = %q %q %q", h.Name(), h.Namespace(), h.Fields())
			}
			if info := h.Info(); info.Name != "asset-inventory" || info.Version != assetinventory.Version {
				t.Errorf("info = %+v", info)
			}
			alerts := testAlerts()
			got, err := h.Enrich(t.Context(), alerts)
			if err != nil {
				t.Fatal(err)
			}
			if want := wantPatches(); !reflect.DeepEqual(got, want) {
				t.Errorf("patches:\n got %v\nwant %v", got, want)
			}
			// The in-process path (the enrichment function called directly) agrees.
			direct := assetinventory.New(nil)
			if err := direct.Configure(t.Context(), cfg.Config); err != nil {
				t.Fatal(err)
			}
			if d, _ := direct.Enrich(t.Context(), testAlerts()); !reflect.DeepEqual(d, got) {
				t.Errorf("direct call differs:\n got %v\nwant %v", d, got)
			}
			if !reflect.DeepEqual(alerts, testAlerts()) {
				t.Error("Enrich modified its input")
			}
			if empty, err := h.Enrich(t.Context(), nil); err != nil || len(empty) != 0 {
				t.Errorf("empty batch = %v, %v", empty, err)
			}
			if calls(t, m, metrics.PluginResultOK) != 1 || value(t, m.Up.WithLabelValues("asset")) != 1 {
				t.Errorf("calls ok = %v, up = %v", calls(t, m, metrics.PluginResultOK), value(t, m.Up.WithLabelValues("asset")))
			}
			if err := h.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if value(t, m.Up.WithLabelValues("asset")) != 0 {
				t.Error("up after Close")
			}
			if _, err := h.Enrich(t.Context(), testAlerts()); !errors.Is(err, enrich.ErrStageUnavailable) {
				t.Errorf("Enrich after Close: %v, want ErrStageUnavailable", err)
			}
		})
	}
}

func TestPluginLogsReachDaemonLogger(t *testing.T) {
	_, _, logs := startHost(t, pluginConfig(nil))
	// The plugin logs "inventory loaded" through plugin.Logger at start.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"inventory loaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin log not routed to the daemon logger:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"inventory loaded"`) {
			line = l
		}
	}
	for _, want := range []string{`"level":"INFO"`, `"plugin":"asset"`, `"hosts":4`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %s lacks %s", line, want)
		}
	}
}

func TestCrashMidBatchRestartsAndRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		knob      int // crash_after_calls
		wantErr   bool
		wantCrash float64
	}{
		// Call 2 crashes; the fresh process counts from 0, so the retry succeeds.
		{name: "crash once", knob: 1, wantCrash: 1},
		// Every call crashes: 3 sends, then ErrStageUnavailable.
		{name: "crash always", knob: 0, wantErr: true, wantCrash: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m, _ := startHost(t, pluginConfig(map[string]any{"crash_after_calls": tc.knob}))
			if tc.knob > 0 {
				if _, err := h.Enrich(t.Context(), testAlerts()); err != nil {
					t.Fatalf("first call: %v", err)
				}
			}
			got, err := h.Enrich(t.Context(), testAlerts())
			if tc.wantErr {
				if !errors.Is(err, enrich.ErrStageUnavailable) || !errors.Is(err, plugin.ErrPluginUnavailable) {
					t.Fatalf("err = %v, want ErrStageUnavailable", err)
				}
				if !strings.Contains(err.Error(), "plugin asset") {
					t.Errorf("error does not name the plugin: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("call after crash: %v", err)
				}
				if !reflect.DeepEqual(got, wantPatches()) {
					t.Errorf("patches after retry = %v", got)
				}
			}
			if c := calls(t, m, metrics.PluginResultCrash); c != tc.wantCrash {
				t.Errorf("crash calls = %v, want %v", c, tc.wantCrash)
			}
			if r := value(t, m.Restarts.WithLabelValues("asset")); r < 1 {
				t.Errorf("restarts = %v, want >= 1", r)
			}
		})
	}
}

func TestCrashedPluginBacksOff(t *testing.T) {
	h, m, _ := startHost(t, pluginConfig(map[string]any{"crash_after_calls": 0}))
	h.SetBackoff(time.Minute, time.Minute)
	start := time.Now()
	if _, err := h.Enrich(t.Context(), testAlerts()); !errors.Is(err, enrich.ErrStageUnavailable) {
		t.Fatalf("err = %v", err)
	}
	// While the restart backs off, calls fail at once instead of blocking the pipeline.
	_, err := h.Enrich(t.Context(), testAlerts())
	if !errors.Is(err, enrich.ErrStageUnavailable) || !strings.Contains(err.Error(), "backing off") {
		t.Fatalf("err = %v, want backing off", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	if calls(t, m, metrics.PluginResultUnavailable) < 1 || value(t, m.Up.WithLabelValues("asset")) != 0 {
		t.Errorf("unavailable calls = %v, up = %v", calls(t, m, metrics.PluginResultUnavailable), value(t, m.Up.WithLabelValues("asset")))
	}
}

func TestHangTimesOutKillsAndRestarts(t *testing.T) {
	cfg := pluginConfig(map[string]any{"hang_after_calls": 1})
	cfg.Timeout = 500 * time.Millisecond
	h, m, _ := startHost(t, cfg)
	if _, err := h.Enrich(t.Context(), testAlerts()); err != nil {
		t.Fatalf("first call: %v", err)
	}
	start := time.Now()
	_, err := h.Enrich(t.Context(), testAlerts())
	if !errors.Is(err, enrich.ErrStageUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want unavailable after deadline", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("hung call returned after %s, timeout is %s", d, cfg.Timeout)
	}
	if calls(t, m, metrics.PluginResultTimeout) != 1 {
		t.Errorf("timeout calls = %v", calls(t, m, metrics.PluginResultTimeout))
	}
	if value(t, m.Restarts.WithLabelValues("asset")) != 1 || value(t, m.Up.WithLabelValues("asset")) != 1 {
		t.Errorf("restarts = %v, up = %v", value(t, m.Restarts.WithLabelValues("asset")), value(t, m.Up.WithLabelValues("asset")))
	}
	// The new process counts calls from zero again: its first call answers.
	if got, err := h.Enrich(t.Context(), testAlerts()); err != nil || !reflect.DeepEqual(got, wantPatches()) {
		t.Fatalf("call after restart: %v, %v", got, err)
	}
}

func TestWrongChecksumRefusesToStart(t *testing.T) {
	cfg := pluginConfig(nil)
	cfg.SHA256 = strings.Repeat("ab", 32)
	_, err := plugin.NewHost(t.Context(), cfg, nil, nil)
	if !errors.Is(err, plugin.ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	for _, want := range []string{`plugin "asset"`, pluginBin, "expected sha256 " + cfg.SHA256, "binary has " + pluginSum} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestBadHandshakeRefusesToStart(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode, want string
	}{
		{mode: "wrong-version", want: "incompatible API version"},
		{mode: "netrpc", want: "netrpc"},
		{mode: "not-a-plugin", want: "hello, I am not a plugin"},
		{mode: "exit", want: "Failed to read any lines"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := config.Plugin{Name: "asset", Path: self, SHA256: sum, Timeout: time.Second,
				Args: []string{"-test.run=^TestHelperProcess$", "--", tc.mode}}
			_, err := plugin.NewHost(t.Context(), cfg, nil, nil)
			if !errors.Is(err, plugin.ErrHandshake) {
				t.Fatalf("err = %v, want ErrHandshake", err)
			}
			for _, want := range []string{`plugin "asset"`, self, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestBadConfigOrDescriptionRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     func(c *config.Plugin)
		wantIs  error
		wantMsg string
	}{
		{name: "namespace differs from name", cfg: func(c *config.Plugin) { c.Name = "inventory" },
			wantIs: plugin.ErrBadDescription, wantMsg: `declares namespace "asset" but is configured as "inventory"`},
		{name: "plugin config error", cfg: func(c *config.Plugin) { c.Config["nope"] = 1 },
			wantMsg: "config.nope: unknown key"},
		{name: "missing binary", cfg: func(c *config.Plugin) { c.Path = "/nonexistent/plugin" },
			wantMsg: "/nonexistent/plugin"},
		{name: "bad sha256", cfg: func(c *config.Plugin) { c.SHA256 = "xyz" },
			wantMsg: "is not a SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pluginConfig(nil)
			tc.cfg(&cfg)
			_, err := plugin.NewHost(t.Context(), cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want %q", err, tc.wantMsg)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
		})
	}
	// A configured namespace makes a second instance possible.
	cfg := pluginConfig(map[string]any{"namespace": "inventory"})
	cfg.Name = "inventory"
	h, err := plugin.NewHost(t.Context(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close(context.Background()) }()
	if h.Namespace() != "inventory" {
		t.Errorf("namespace = %q", h.Namespace())
	}
}

// fakeObserver records what the pipeline reports.
type fakeObserver struct {
	mu       sync.Mutex
	rejected map[string]int
	results  map[string][]string
}

var _ enrich.Observer = (*fakeObserver)(nil)

func (o *fakeObserver) StageCall(stage, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.results == nil {
		o.results = map[string][]string{}
	}
	o.results[stage] = append(o.results[stage], result)
}

func (o *fakeObserver) PatchRejected(stage string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rejected == nil {
		o.rejected = map[string]int{}
	}
	o.rejected[stage]++
}

// attackStage stands in for the built-in ATT&CK stage.
func attackStage() *enrich.StageFunc {
	return &enrich.StageFunc{
		StageName: "attack", StageNS: "attack_mappings", StageFields: []string{"kibana.alert.rule.threat"},
		Func: func(_ context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
			out := make([]enrich.Patch, len(alerts))
			for i := range alerts {
				out[i] = enrich.Patch{"attack_mappings": map[string]any{"techniques": []any{"T1021.002"}}}
			}
			return out, nil
		},
	}
}

func TestPipeline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		knobs    map[string]any
		required bool
		// per alert
		wantOutcome  enrich.Outcome
		wantPending  []string
		wantAsset    bool
		wantRejected float64
		wantResult   string
	}{
		{name: "healthy optional", wantOutcome: enrich.OutcomeOK, wantAsset: true, wantResult: "ok"},
		{name: "optional down", knobs: map[string]any{"crash_after_calls": 0},
			wantOutcome: enrich.OutcomePartial, wantPending: []string{"asset"}, wantResult: "unavailable"},
		{name: "required down", knobs: map[string]any{"crash_after_calls": 0}, required: true,
			wantOutcome: enrich.OutcomeDeferred, wantResult: "unavailable"},
		{name: "forbidden patch", knobs: map[string]any{"write_outside_namespace": true},
			wantOutcome: enrich.OutcomePartial, wantPending: []string{"asset"}, wantRejected: 3, wantResult: "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m, _ := startHost(t, pluginConfig(tc.knobs))
			obs := &fakeObserver{}
			p, err := enrich.NewPipeline([]enrich.PipelineStage{
				{Stage: attackStage(), Required: true},
				{Stage: h, Required: tc.required},
			}, "attack_mappings", obs, nil)
			if err != nil {
				t.Fatal(err)
			}
			alerts := testAlerts()[:3] // all three match the inventory
			res := p.Run(t.Context(), alerts)
			if len(res) != len(alerts) {
				t.Fatalf("%d results for %d alerts", len(res), len(alerts))
			}
			for i, r := range res {
				if r.Alert != alerts[i] || r.Outcome != tc.wantOutcome || !reflect.DeepEqual(r.Pending, tc.wantPending) {
					t.Errorf("alert %d: outcome %s pending %v (err %v), want %s %v", i, r.Outcome, r.Pending, r.Err, tc.wantOutcome, tc.wantPending)
				}
				if tc.wantOutcome == enrich.OutcomeDeferred {
					if r.Doc != nil {
						t.Errorf("alert %d: deferred but doc %v", i, r.Doc)
					}
					continue
				}
				if _, ok := r.Doc["attack_mappings"]; !ok {
					t.Errorf("alert %d: ATT&CK part missing: %v", i, r.Doc)
				}
				if _, ok := r.Doc["asset"]; ok != tc.wantAsset {
					t.Errorf("alert %d: asset in doc = %v, want %v", i, ok, tc.wantAsset)
				}
				if _, ok := r.Doc["host"]; ok {
					t.Errorf("alert %d: forbidden field written: %v", i, r.Doc)
				}
				st, _ := r.Doc["attack_mappings"].(map[string]any)
				if pend, _ := st[enrich.PendingField].([]string); len(pend) != len(tc.wantPending) {
					t.Errorf("alert %d: pending_stages = %v", i, st[enrich.PendingField])
				}
			}
			if got := value(t, m.PatchesRejected.WithLabelValues("asset")); got != tc.wantRejected {
				t.Errorf("plugin patches rejected = %v, want %v", got, tc.wantRejected)
			}
			if obs.rejected["asset"] != int(tc.wantRejected) {
				t.Errorf("pipeline rejected = %v, want %v", obs.rejected["asset"], tc.wantRejected)
			}
			// A batch the plugin crashes on is sent again in halves, looking for the alert
			// that brings it down (here none: it crashes on every call), so a few calls.
			got := obs.results["asset"]
			if len(got) == 0 || len(got) > 4 {
				t.Errorf("stage results = %v, want 1 to 4 calls", got)
			}
			for _, r := range got {
				if r != tc.wantResult {
					t.Errorf("stage results = %v, want only %s", got, tc.wantResult)
					break
				}
			}
		})
	}
}

// TestEnrichConcurrently is a race smoke test: many goroutines share one host, with a
// plugin that crashes now and then.
func TestEnrichConcurrently(t *testing.T) {
	h, _, _ := startHost(t, pluginConfig(map[string]any{"crash_after_calls": 15}))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				got, err := h.Enrich(t.Context(), testAlerts())
				switch {
				case errors.Is(err, enrich.ErrStageUnavailable):
					// Acceptable under a crash storm: the alerts stay pending.
				case err != nil:
					errs <- err
				case !reflect.DeepEqual(got, wantPatches()):
					errs <- fmt.Errorf("patches = %v", got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := h.Enrich(t.Context(), testAlerts()); err != nil || !reflect.DeepEqual(got, wantPatches()) {
		t.Errorf("after the storm: %v, %v", got, err)
	}
}

func TestProcessExitWhileIdleRestarts(t *testing.T) {
	h, m, _ := startHost(t, pluginConfig(nil))
	h.KillProcess() // dies between batches
	got, err := h.Enrich(t.Context(), testAlerts())
	if err != nil || !reflect.DeepEqual(got, wantPatches()) {
		t.Fatalf("Enrich after the process died = %v, %v", got, err)
	}
	if r := value(t, m.Restarts.WithLabelValues("asset")); r != 1 {
		t.Errorf("restarts = %v, want 1", r)
	}
}
