// Command bench measures enricher against a real Elasticsearch and prints ratios measured
// side by side in one run (see `make bench`):
//
//   - end to end: enriched alerts/s (search, pipeline, guarded _bulk partial updates)
//     next to the raw _bulk partial-update ceiling of the same node, for the same
//     documents and the same updates; on the Elasticsearch of -es, and the same again on
//     the OpenSearch of -opensearch when given;
//   - the enrich step's cost per alert next to a plain decode-to-map/encode baseline;
//   - per-alert enrich cost with every shared CTID framework loaded next to the built-in rules;
//   - the size of the compact ATT&CK shape next to the full one: bytes added to an alert,
//     store size of the enriched indices, and `run --once` with every shared CTID file
//     next to the built-in rules (detail.go);
//   - resident memory of `enricher run --once` while it enriches many alerts.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	esURL           = flag.String("es", envOr("ELASTICSEARCH_URL", "http://127.0.0.1:9200"), "Elasticsearch URL")
	osURL           = flag.String("opensearch", envOr("OPENSEARCH_URL", ""), "OpenSearch URL for the end-to-end comparison there too ('' skips it)")
	n               = flag.Int("n", 20000, "alerts for the end-to-end comparison")
	memN            = flag.Int("mem-n", 100000, "alerts for the resident-memory run (0 skips it)")
	bin             = flag.String("bin", "bin/enricher", "enricher binary for the memory run")
	shared          = flag.String("shared", "../shared/data/mappings", "folder of CTID files for the all-frameworks figures ('' skips)")
	batch           = flag.Int("batch", 1000, "batch size for both sides")
	rounds          = flag.Int("rounds", 5, "rounds of the end-to-end comparison (median of their ratios)")
	verbose         = flag.Bool("v", false, "print where end-to-end time goes, and what takes the store in the compact-shape figures")
	ceilingInFlight = flag.Int("ceiling-in-flight", 1, "bulk requests the raw ceiling keeps in flight (the runner keeps 2)")
	cpuProf         = flag.String("cpuprofile", "", "write a CPU profile of the whole bench to this file")
	only            = flag.String("only", "", "run only these sections, comma-separated: step, frameworks, e2e, detail, runloop, idle, memory, replicas ('' runs all)")
	clusterURL      = flag.String("cluster", "", "URLs of the three-node cluster (make cluster-up), comma-separated, for the replica figures ('' skips them)")
)

// want says whether a section runs (-only).
func want(section string) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if strings.TrimSpace(s) == section {
			return true
		}
	}
	return false
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() error {
	flag.Parse()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{*esURL}, RequestTimeout: 120 * time.Second}, nil)
	if err != nil {
		return err
	}
	builtin, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		return err
	}
	fmt.Printf("enricher bench: %d alerts, batch %d, Elasticsearch %s", *n, *batch, *esURL)
	if *osURL != "" {
		fmt.Printf(", OpenSearch %s", *osURL)
	}
	fmt.Printf(", GOMAXPROCS %d\n\n", runtime.GOMAXPROCS(0))

	if want("step") {
		if err := stepCost(builtin); err != nil {
			return err
		}
	}
	var all *rules.Ruleset
	if *shared != "" && want("frameworks") {
		if all, err = frameworksCost(ctx, builtin); err != nil {
			return err
		}
	}
	var ceiling float64
	if want("e2e") {
		if ceiling, err = endToEnd(ctx, *esURL, c, builtin); err != nil {
			return err
		}
		// The same comparison on OpenSearch: the same client code, which detects the
		// server (GET /) and speaks its dialect.
		if *osURL != "" {
			oc, err := elastic.NewClient(config.Elasticsearch{URLs: []string{*osURL}, RequestTimeout: 120 * time.Second}, nil)
			if err != nil {
				return err
			}
			if _, err := endToEnd(ctx, *osURL, oc, builtin); err != nil {
				return fmt.Errorf("end to end on %s: %w", *osURL, err)
			}
		}
	}
	if *detailN > 0 && want("detail") {
		if err := detailSize(ctx, c, builtin, all); err != nil {
			return err
		}
	}
	if *histN > 0 && want("runloop") {
		if err := runLoop(ctx, c, ceiling); err != nil {
			return err
		}
	}
	if *idleBig > 0 && want("idle") {
		if err := idlePoll(ctx, c); err != nil {
			return err
		}
	}
	if *memN > 0 && want("memory") {
		if err := memory(ctx, c); err != nil {
			return err
		}
	}
	if *clusterURL != "" && want("replicas") {
		if err := replicas(ctx, builtin); err != nil {
			return err
		}
	}
	return nil
}

// sources returns the _source bodies of n sample alerts, as JSON and decoded.
func sources(n int) ([][]byte, []map[string]any) {
	docs := sample.Generate(n, 42)
	raw := make([][]byte, len(docs))
	dec := make([]map[string]any, len(docs))
	for i, d := range docs {
		raw[i], _ = json.Marshal(d.Source)
		_ = json.Unmarshal(raw[i], &dec[i])
	}
	return raw, dec
}

func perOp(r testing.BenchmarkResult, per int) float64 {
	return float64(r.T.Nanoseconds()) / float64(r.N) / float64(per)
}

// stepCost: the enrich step (extract IDs, look up, build the root object) per alert,
// next to decoding the alert to a map and encoding it again.
func stepCost(rs *rules.Ruleset) error {
	raw, dec := sources(1000)
	st := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true, Detail: enrich.DetailCompact})
	now := time.Now().UTC().Format(time.RFC3339Nano)
	baseline := func() float64 {
		r := testing.Benchmark(func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, r := range raw {
					var m map[string]any
					_ = json.Unmarshal(r, &m)
					_, _ = json.Marshal(m)
				}
			}
		})
		return perOp(r, len(raw))
	}
	step := func() float64 {
		r := testing.Benchmark(func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, s := range dec {
					_ = st.Document(s, now)
				}
			}
		})
		return perOp(r, len(dec))
	}
	// Interleaved rounds, least of each: the steadiest estimate on a shared machine.
	var bs, os_ []float64
	for i := 0; i < 3; i++ {
		runtime.GC()
		bs = append(bs, baseline())
		runtime.GC()
		os_ = append(os_, step())
	}
	b, o := minimum(bs), minimum(os_)
	fmt.Printf("enrich step, per alert (built-in rules):\n")
	fmt.Printf("  decode-to-map + encode baseline  %8.0f ns\n", b)
	fmt.Printf("  enrich step                      %8.0f ns\n", o)
	fmt.Printf("  ratio                            %8.1fx cheaper (target >= 20x)\n\n", b/o)
	return nil
}

// sharedFiles are the CTID files of every framework in -shared.
func sharedFiles() []string {
	files, _ := filepath.Glob(filepath.Join(*shared, "*-enterprise.json"))
	return files
}

// frameworksCost returns the ruleset of every shared CTID file (nil when there are none).
func frameworksCost(ctx context.Context, builtin *rules.Ruleset) (*rules.Ruleset, error) {
	files := sharedFiles()
	if len(files) == 0 {
		fmt.Printf("all frameworks: no CTID files in %s, skipped\n\n", *shared)
		return nil, nil
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	all, err := rules.Load(ctx, rules.LoadConfig{Sources: files})
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	fmt.Printf("all shared CTID files (%d files, %d mappings, %d techniques):\n", len(files), all.Len(), len(all.Techniques()))
	fmt.Printf("  load time                        %8d ms\n", took.Milliseconds())
	fmt.Printf("  live heap after load             %8.1f MB\n", float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/1e6)
	fmt.Printf("  process RSS now                  %8.1f MB\n", rssMB())

	_, dec := sources(1000)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	cost := func(rs *rules.Ruleset) float64 {
		runtime.GC()
		st := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true, Detail: enrich.DetailCompact})
		r := testing.Benchmark(func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, s := range dec {
					_ = st.Document(s, now)
				}
			}
		})
		return perOp(r, len(dec))
	}
	// Interleave to share machine noise.
	var b1, a1 []float64
	for i := 0; i < 5; i++ {
		b1 = append(b1, cost(builtin))
		a1 = append(a1, cost(all))
	}
	b, a := minimum(b1), minimum(a1)
	fmt.Printf("  enrich step, built-in rules      %8.0f ns/alert\n", b)
	fmt.Printf("  enrich step, all frameworks      %8.0f ns/alert\n", a)
	fmt.Printf("  ratio                            %8.2f (target <= 1.10)\n\n", a/b)
	return all, nil
}

// minimum is the least noisy estimate of a cost on a shared machine.
func minimum(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[0]
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// endToEnd compares enricher against the raw _bulk partial-update ceiling on fresh copies
// of the same alerts: the ceiling sends exactly the updates enricher computed, with the
// same batch size, skipping search and pipeline. Each round measures both sides back to
// back, in alternating order; the figure is the median of the rounds' ratios, which cancels
// the drift of a shared machine better than comparing best rounds. c is a client of the
// server at serverURL (Elasticsearch or OpenSearch), which the heading names as detected.
func endToEnd(ctx context.Context, serverURL string, c *elastic.Client, rs *rules.Ruleset) (float64, error) {
	srv, err := serverName(ctx, c)
	if err != nil {
		return 0, err
	}
	space := sample.KibanaSpace("bench")
	docs := kibanaDocs(space, *n)
	defer deleteSpace(ctx, c, space)
	var ratios, rates, ceils []float64
	for r := 0; r < *rounds; r++ {
		var rate, ceil float64
		if r%2 == 0 {
			if rate, err = runEnricherAt(ctx, serverURL, c, space, docs, rs, enrich.DetailCompact); err == nil {
				ceil, err = runCeiling(ctx, c, space, docs, rs)
			}
		} else {
			if ceil, err = runCeiling(ctx, c, space, docs, rs); err == nil {
				rate, err = runEnricherAt(ctx, serverURL, c, space, docs, rs, enrich.DetailCompact)
			}
		}
		if err != nil {
			return 0, err
		}
		ratios, rates, ceils = append(ratios, rate/ceil), append(rates, rate), append(ceils, ceil)
		fmt.Printf("  round %d: enricher %7.0f alerts/s, raw _bulk ceiling %7.0f alerts/s, ratio %.2f\n", r+1, rate, ceil, rate/ceil)
	}
	fmt.Printf("end to end on %s, %d Kibana alerts (%d rounds):\n", srv, len(docs), *rounds)
	fmt.Printf("  enricher run --once, median      %8.0f alerts/s\n", median(rates))
	fmt.Printf("  raw _bulk ceiling (same writes)  %8.0f alerts/s\n", median(ceils))
	fmt.Printf("  ratio, median of rounds          %8.2f (target >= 0.90)\n\n", median(ratios))
	return median(ceils), nil
}

// serverName names the server of c and its version, "Elasticsearch 8.19.9", "OpenSearch
// 2.19.6": as the client detected it (GET /), the version read from the local node when
// GET / did not give it (the integ-test build of Elasticsearch that make es-up runs has no
// GET /: it answers 405).
func serverName(ctx context.Context, c *elastic.Client) (string, error) {
	srv, err := c.Server(ctx)
	if err != nil {
		return "", err
	}
	if srv.Version != "" {
		return srv.String(), nil
	}
	code, body, err := c.Do(ctx, "other", http.MethodGet, "/_nodes/_local", url.Values{"filter_path": {"nodes.*.version"}}, nil)
	var nodes struct {
		Nodes map[string]struct {
			Version string `json:"version"`
		} `json:"nodes"`
	}
	if err == nil && code == http.StatusOK && json.Unmarshal(body, &nodes) == nil {
		for _, n := range nodes.Nodes {
			srv.Version = n.Version
		}
	}
	return srv.String(), nil
}

// runEnricher loads docs into a fresh space and returns the alerts/s of RunOnce over them
// with the ATT&CK stage writing the given shape (enrich.DetailCompact, DetailFull), on the
// Elasticsearch of -es (c is a client of it).
func runEnricher(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset, detail string) (float64, error) {
	return runEnricherAt(ctx, *esURL, c, space, docs, rs, detail)
}

// runEnricherAt is runEnricher on the server at serverURL, c a client of it. The runner
// gets a client of its own, instrumented, for the time by operation of -v.
func runEnricherAt(ctx context.Context, serverURL string, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset, detail string) (float64, error) {
	if err := reset(ctx, c, space, docs); err != nil {
		return 0, err
	}
	m := metrics.New(prometheus.NewRegistry())
	mc, err := elastic.NewClient(config.Elasticsearch{URLs: []string{serverURL}, RequestTimeout: 120 * time.Second}, m)
	if err != nil {
		return 0, err
	}
	r, err := newRunner(mc, m, []string{space.Alias()}, rs, detail, "bench-"+string(space), runnerOpts())
	if err != nil {
		return 0, err
	}
	start := time.Now()
	res, err := r.RunOnce(ctx)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	if res.Written != len(docs) {
		return 0, fmt.Errorf("enricher wrote %d of %d alerts", res.Written, len(docs))
	}
	if *verbose {
		fmt.Printf("  time by operation (of %s):", took.Round(time.Millisecond))
		for _, op := range []string{"pit_open", "search", "bulk", "mget", "mapping", "state", "pit_close"} {
			fmt.Printf(" %s %s", op, opSeconds(m, op).Round(time.Millisecond))
		}
		fmt.Println()
	}
	return float64(res.Written) / took.Seconds(), nil
}

// runnerOpts are the daemon's defaults with the bench's batch size and no rate limit.
func runnerOpts() runner.Options {
	return runner.Options{BatchSize: *batch, MaxRetries: 5, MaxAttempts: 3, MaxAlertBytes: 10 << 20,
		BackoffInitial: 100 * time.Millisecond, BackoffMax: 5 * time.Second, PollInterval: 10 * time.Second,
		LiveWindow: time.Hour, SweepInterval: 10 * time.Minute, IndexRetry: time.Minute,
		ShutdownTimeout: 30 * time.Second, TechniqueFields: enrich.DefaultFields, Settle: time.Second}
}

// newRunner wires the daemon's runner over indices with its own state index.
func newRunner(c *elastic.Client, m *metrics.Metrics, indices []string, rs *rules.Ruleset, detail, stateIndex string, o runner.Options) (*runner.Runner, error) {
	p, err := pipeline(rs, m, detail)
	if err != nil {
		return nil, err
	}
	store := elastic.NewStore(c, elastic.StoreOptions{Indices: indices, InstallMappings: true, MaxRequestItems: o.BatchSize}, nil)
	state := elastic.NewState(c, "."+stateIndex, indices, "bench")
	o.Scope = stateIndex
	return runner.New(store, state, p, o, m, slog.New(slog.DiscardHandler)), nil
}

// pipeline is the daemon's pipeline: the ATT&CK stage alone, writing the given shape
// (enrich.DetailCompact is the daemon's default).
func pipeline(rs *rules.Ruleset, m *metrics.Metrics, detail string) (*enrich.Pipeline, error) {
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true, Detail: detail})
	var obs enrich.Observer
	if m != nil {
		obs = m
	}
	return enrich.NewPipeline([]enrich.PipelineStage{{Stage: attack, Required: true}}, "attack_mappings", obs, nil)
}

// runCeiling sends the writes enricher would send (each alert's whole _source with the
// root spliced in), precomputed, as raw _bulk requests without a version guard.
func runCeiling(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset) (float64, error) {
	if err := reset(ctx, c, space, docs); err != nil {
		return 0, err
	}
	return runCeilingLoaded(ctx, c, space, docs, rs)
}

// runCeilingLoaded is runCeiling over docs loaded already.
func runCeilingLoaded(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset) (float64, error) {
	store := elastic.NewStore(c, elastic.StoreOptions{Indices: []string{space.Alias()}, InstallMappings: true}, nil)
	if _, _, err := store.Prepare(ctx, nil); err != nil {
		return 0, err
	}
	bodies, err := ceilingBodies(space, docs, rs)
	if err != nil {
		return 0, err
	}
	// inFlight requests at once: 1 is the plain sequential client, 2 what the runner
	// keeps in flight.
	inFlight := *ceilingInFlight
	start := time.Now()
	work := make(chan []byte)
	errs := make(chan error, inFlight)
	for range inFlight {
		go func() {
			for b := range work {
				code, resp, err := c.Do(ctx, "bulk", http.MethodPost, "/_bulk", nil, b)
				if err != nil || code != http.StatusOK || bytes.Contains(resp[:min(len(resp), 64)], []byte(`"errors":true`)) {
					errs <- fmt.Errorf("ceiling bulk: %v %d %.300s", err, code, resp)
					for range work {
					}
					return
				}
			}
			errs <- nil
		}()
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	for range inFlight {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return float64(len(docs)) / time.Since(start).Seconds(), nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func kibanaDocs(s sample.KibanaSpace, n int) []sample.Doc {
	var out []sample.Doc
	for _, d := range sample.Generate(n*2, 7) {
		if d.Index == sample.KibanaAlias && len(out) < n {
			d.Index = s.Alias()
			out = append(out, d)
		}
	}
	return out
}

func deleteSpace(ctx context.Context, c *elastic.Client, s sample.KibanaSpace) {
	c.Do(ctx, "other", http.MethodDelete, "/.internal.alerts-security.alerts-"+string(s)+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
}

func reset(ctx context.Context, c *elastic.Client, s sample.KibanaSpace, docs []sample.Doc) error {
	deleteSpace(ctx, c, s)
	if err := sample.SetupKibana(ctx, c, s); err != nil {
		return err
	}
	return sample.Load(ctx, c, docs)
}

func ceilingBodies(s sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset) ([][]byte, error) {
	p, err := pipeline(rs, nil, enrich.DetailCompact)
	if err != nil {
		return nil, err
	}
	off := runner.NewOffline(p.WithGeneration(1), runner.Options{MaxAttempts: 1}, nil, nil)
	var out [][]byte
	var buf bytes.Buffer
	for start := 0; start < len(docs); start += *batch {
		var alerts []*enrich.Alert
		for _, d := range docs[start:min(start+*batch, len(docs))] {
			raw, _ := json.Marshal(d.Source)
			alerts = append(alerts, &enrich.Alert{ID: d.ID, Index: s.Backing(), Raw: raw})
		}
		srcs, err := off.Enrich(context.Background(), alerts)
		if err != nil {
			return nil, err
		}
		for i, a := range alerts {
			meta, _ := json.Marshal(map[string]any{"index": map[string]any{"_index": a.Index, "_id": a.ID}})
			buf.Write(meta)
			buf.WriteByte('\n')
			buf.Write(srcs[i])
			buf.WriteByte('\n')
		}
		out = append(out, append([]byte(nil), buf.Bytes()...))
		buf.Reset()
	}
	return out, nil
}

// memory runs the real binary over many alerts and reports its peak resident memory.
func memory(ctx context.Context, c *elastic.Client) error {
	if _, err := os.Stat(*bin); err != nil {
		return fmt.Errorf("memory run needs the binary %s (make build): %w", *bin, err)
	}
	space := sample.KibanaSpace("benchmem")
	docs := kibanaDocs(space, *memN)
	if err := reset(ctx, c, space, docs); err != nil {
		return err
	}
	defer deleteSpace(ctx, c, space)
	cfg := filepath.Join(os.TempDir(), "enricher-bench-mem.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\ndaemon: {listen: \"127.0.0.1:0\", batch_size: %d}\n",
		*esURL, space.Alias(), *batch)), 0o644)
	cmd := exec.CommandContext(ctx, *bin, "run", "--once", "--config", cfg, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	// Sample the child's VmHWM (peak RSS of its own address space) until it exits.
	// wait4's ru_maxrss is no use here: Linux folds the parent's peak in at exec.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peakKB int64
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("memory run: %w", err)
			}
			running = false
		case <-time.After(20 * time.Millisecond):
			if kb := vmHWM(status); kb > peakKB {
				peakKB = kb
			}
		}
	}
	fmt.Printf("resident memory, enricher run --once over %d alerts (%s):\n", len(docs), strings.TrimSpace(stdout.String()))
	fmt.Printf("  peak RSS (VmHWM)                 %8.1f MB (target < 100 MB), %.0f alerts/s\n\n",
		float64(peakKB)/1024, float64(len(docs))/time.Since(start).Seconds())
	return nil
}

func opSeconds(m *metrics.Metrics, op string) time.Duration {
	var pb dto.Metric
	h, err := m.ESDuration.GetMetricWithLabelValues(op)
	if err != nil {
		return 0
	}
	if err := h.(prometheus.Metric).Write(&pb); err != nil {
		return 0
	}
	return time.Duration(pb.GetHistogram().GetSampleSum() * float64(time.Second))
}

// vmHWM reads the peak resident set size, in kB, from a /proc/PID/status file.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%d", &kb)
			return kb
		}
	}
	return 0
}

func counterValue(c prometheus.Counter) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		return 0
	}
	return pb.GetCounter().GetValue()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var pb dto.Metric
	if err := g.Write(&pb); err != nil {
		return 0
	}
	return pb.GetGauge().GetValue()
}
