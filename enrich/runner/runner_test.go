package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/rules"
)

const root = enrich.DefaultRoot

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testOptions() Options {
	return Options{
		BatchSize: 10, MaxRetries: 3, MaxAttempts: 3, BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, LiveWindow: time.Hour, SweepInterval: time.Hour, IndexRetry: time.Hour,
		ShutdownTimeout: time.Second, TechniqueFields: enrich.DefaultFields,
	}
}

// pipeline returns the ATT&CK stage over the built-in rules, then extra stages.
func pipeline(t *testing.T, inherit bool, extra ...enrich.PipelineStage) *enrich.Pipeline {
	t.Helper()
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: inherit})
	p, err := enrich.NewPipeline(append([]enrich.PipelineStage{{Stage: attack, Required: true}}, extra...), root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newRunner(t *testing.T, st *fakeStore, state *fakeState, p *enrich.Pipeline, o Options) (*Runner, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	r := New(st, state, p, o, m, testLog(t))
	return r, m
}

func loadAlerts(st *fakeStore, index string, n int, ts time.Time) {
	for i := 0; i < n; i++ {
		st.add(index, fmt.Sprintf("a%03d", i), ts.Add(-time.Duration(i)*time.Second), alertSrc("T1021.002", fmt.Sprintf(`"n":%d`, i)))
	}
}

func TestRunOnceEnrichesEverything(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 25, time.Now())
	st.add("alerts-1", "old", time.Now().Add(-48*time.Hour), alertSrc("T1021.002"))
	st.add("alerts-1", "untimed", time.Time{}, alertSrc("T1021.002"))
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	sum, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != 27 {
		t.Fatalf("written %d, want 27", sum.Written)
	}
	for _, id := range []string{"a000", "a024", "old", "untimed"} {
		got := st.root("alerts-1", id, root)
		if got["status"] != "enriched" || got["ruleset"].(map[string]any)["generation"].(float64) != 1 {
			t.Fatalf("%s: root %v", id, got)
		}
	}
	// Nothing outside the root changed.
	if d := st.doc("alerts-1", "a003"); !strings.HasPrefix(string(d.raw), `{"threat":{"technique":{"id":["T1021.002"]}},"n":3,"attack_mappings":{`) {
		t.Fatalf("source rewritten: %s", d.raw)
	}
}

// TestUnsearchableGeneration: when scans cannot filter on the generation (unmapped in a
// "dynamic": false index), every alert comes back every poll; each is still written once.
func TestUnsearchableGeneration(t *testing.T) {
	st := newFakeStore()
	st.unsearchable = true
	loadAlerts(st, "alerts-1", 30, time.Now())
	st.add("alerts-1", "old", time.Now().Add(-72*time.Hour), alertSrc("T1021.002"))
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	go func() { // searches catch up with writes now and then, as a refresh would
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			st.refresh()
		}
	}()
	_ = r.Run(ctx)
	if k, n := st.maxWrites(); n != 1 {
		t.Fatalf("%s written %d times, want 1", k, n)
	}
	if st.writesOf("alerts-1", "old") != 1 || st.writesOf("alerts-1", "a029") != 1 {
		t.Fatal("an alert was not written")
	}
	if st.scans > 40 {
		t.Fatalf("%d scans in 600 ms with a 20 ms poll: passes ran back to back", st.scans)
	}
}

// TestGenerationsConverge: two runners on different rulesets (a rolling upgrade) end
// with every alert enriched by the newer generation, each written at most twice, and
// the older runner never overwrites the newer's work.
func TestGenerationsConverge(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 40, time.Now())
	state := newFakeState(st)
	older, _ := newRunner(t, st, state, pipeline(t, false), testOptions())
	// Register the older generation first, as a daemon that was running already.
	if _, err := older.generation(context.Background()); err != nil {
		t.Fatal(err)
	}
	newer, nm := newRunner(t, st, state, pipeline(t, true), testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			time.Sleep(30 * time.Millisecond)
			st.refresh()
		}
	}()
	done := make(chan struct{})
	go func() { _ = older.Run(ctx); close(done) }()
	_ = newer.Run(ctx)
	<-done
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("a%03d", i)
		g := st.root("alerts-1", id, root)["ruleset"].(map[string]any)["generation"].(float64)
		if g != 2 {
			t.Fatalf("%s has generation %v, want 2 (the newer)", id, g)
		}
		if n := st.writesOf("alerts-1", id); n > 2 {
			t.Fatalf("%s written %d times, want at most 2", id, n)
		}
	}
	if testutil.ToFloat64(nm.Generation) != 2 {
		t.Fatal("newer runner's generation gauge")
	}
}

// TestPoisonAlertQuarantined: a stage that crashes on one alert fails its batch; the
// batch is split, the rest written, and the alert quarantined after its attempts.
func TestPoisonAlertQuarantined(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 10, time.Now())
	var calls atomic.Int32
	crashy := &enrich.StageFunc{StageName: "crashy", StageNS: "crashy", Func: func(_ context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
		calls.Add(1)
		out := make([]enrich.Patch, len(alerts))
		for i, a := range alerts {
			if a.ID == "a004" {
				return nil, fmt.Errorf("plugin crashed: %w: %w", enrich.ErrStageUnavailable, enrich.ErrBatchFailed)
			}
			out[i] = enrich.Patch{"crashy": map[string]any{"ok": true}}
		}
		return out, nil
	}}
	r, m := newRunner(t, st, newFakeState(st), pipeline(t, true, enrich.PipelineStage{Stage: crashy, Required: true}), testOptions())
	sum, err := r.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 alerts quarantined") {
		t.Fatalf("err = %v, want one alert quarantined", err)
	}
	if sum.Written != 9 || sum.Quarantined != 1 {
		t.Fatalf("summary %+v", sum)
	}
	q := st.root("alerts-1", "a004", root)
	if q["status"] != enrich.StatusQuarantined || !strings.Contains(fmt.Sprint(q["quarantine"]), "plugin crashed") {
		t.Fatalf("poison alert root: %v", q)
	}
	if testutil.ToFloat64(m.QuarantinedNow) != 1 {
		t.Fatal("quarantine not counted")
	}
	// A second run leaves the quarantined alert alone.
	before := calls.Load()
	if _, err := r.RunOnce(context.Background()); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if calls.Load() != before {
		t.Fatal("quarantined alert processed again")
	}
}

// TestOversizedAlertQuarantinedOnce: an alert over MaxAlertBytes is quarantined at once,
// and a later process that still sees it (a search that lags, or one that cannot tell)
// leaves it alone rather than quarantine it again.
func TestOversizedAlertQuarantinedOnce(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 3, time.Now())
	st.add("alerts-1", "huge", time.Now(), alertSrc("T1021.002", `"pad":"`+strings.Repeat("x", 4096)+`"`))
	o := testOptions()
	o.MaxAlertBytes = 2048
	state := newFakeState(st)
	r, _ := newRunner(t, st, state, pipeline(t, true), o)
	if sum, err := r.RunOnce(context.Background()); err == nil || sum.Quarantined != 1 {
		t.Fatalf("first run: %+v %v, want one alert quarantined", sum, err)
	}
	st.unsearchable = true // every alert comes back in scans
	r2, _ := newRunner(t, st, state, pipeline(t, true), o)
	if sum, err := r2.RunOnce(context.Background()); err != nil || sum.Quarantined != 0 {
		t.Fatalf("second run: %+v %v, want nothing quarantined again", sum, err)
	}
	if n := st.writesOf("alerts-1", "huge"); n != 1 {
		t.Fatalf("oversized alert written %d times, want once", n)
	}
}

// TestItemFailuresQuarantine: an alert whose write is refused (4xx) or whose retries run
// out is quarantined after its attempt budget; the others are written.
func TestItemFailuresQuarantine(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  WriteResult
	}{
		{"refused", WriteResult{Status: ItemFailed, Code: 400, Reason: "mapper_parsing_exception: failed to parse field [n]"}},
		{"busy forever", WriteResult{Status: ItemRetry, Code: 429, Reason: "es_rejected_execution_exception"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			loadAlerts(st, "alerts-1", 5, time.Now())
			st.writeHook = func(d *fakeDoc, src []byte) (WriteResult, bool) {
				if d.id == "a002" && !strings.Contains(string(src), `"quarantined"`) {
					return tc.res, true
				}
				return WriteResult{}, false
			}
			r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
			sum, err := r.RunOnce(context.Background())
			if err == nil || sum.Written != 4 || sum.Quarantined != 1 {
				t.Fatalf("summary %+v err %v", sum, err)
			}
			if q := st.root("alerts-1", "a002", root); q["status"] != enrich.StatusQuarantined {
				t.Fatalf("root %v", q)
			}
		})
	}
}

// TestIndexProblemsDoNotBlock: an index that cannot be mapped, and one that turns out
// read-only, are left out; the healthy index is enriched and RunOnce names both.
func TestIndexProblemsDoNotBlock(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "good", 15, time.Now())
	loadAlerts(st, "conflict", 5, time.Now())
	loadAlerts(st, "readonly", 5, time.Now())
	st.prepare = func(indices []string) ([]IndexProblem, error) {
		var ps []IndexProblem
		for _, ix := range indices {
			if ix == "conflict" {
				ps = append(ps, IndexProblem{Index: ix, Reason: "mapping_conflict", Permanent: true,
					Detail: "mapper [attack_mappings.controls] cannot be changed from type [text] to [object]"})
			}
		}
		return ps, nil
	}
	st.writeHook = func(d *fakeDoc, _ []byte) (WriteResult, bool) {
		if d.index == "readonly" {
			return WriteResult{Status: ItemIndexFailed, Code: 403,
				Reason: "cluster_block_exception: index [readonly] blocked by: [FORBIDDEN/8/index write (api)]"}, true
		}
		return WriteResult{}, false
	}
	r, m := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	start := time.Now()
	sum, err := r.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "index conflict: mapping_conflict") || !strings.Contains(err.Error(), "index readonly: read_only") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("RunOnce took too long")
	}
	if sum.Written != 15 {
		t.Fatalf("written %d, want the 15 of the healthy index", sum.Written)
	}
	if testutil.ToFloat64(m.IndexProblems.WithLabelValues("read_only")) != 1 {
		t.Fatal("index problem metric")
	}
	if ok, detail := r.Ready(); !ok || !strings.Contains(detail, "index conflict left out") {
		t.Fatalf("ready %v %q", ok, detail)
	}
}

// TestLostResponse: a write applied by the store whose response is lost is recognised on
// the re-read and not written twice.
func TestLostResponse(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 8, time.Now())
	st.lostResponse = func(n int) bool { return n == 1 }
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	if _, err := r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if n := st.writesOf("alerts-1", fmt.Sprintf("a%03d", i)); n != 1 {
			t.Fatalf("a%03d written %d times", i, n)
		}
	}
}

// TestRefusedStoreStopsRunOnce: a store that refuses (401/403) stops RunOnce at once.
func TestRefusedStoreStopsRunOnce(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 3, time.Now())
	st.scanErr = fmt.Errorf("search: status 403: action [indices:data/read/search] is unauthorized: %w", ErrRefused)
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	_, err := r.RunOnce(context.Background())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "indices:data/read/search") {
		t.Fatalf("err = %v", err)
	}
	if ok, _ := r.Ready(); ok {
		t.Fatal("ready after a refusal")
	}
}

// TestBackfillResumes: a backfill stopped half-way resumes from its checkpoint.
func TestBackfillResumes(t *testing.T) {
	st := newFakeStore()
	old := time.Now().Add(-30 * 24 * time.Hour)
	loadAlerts(st, "alerts-1", 50, old)
	state := newFakeState(st)
	o := testOptions()
	o.BackfillRate = 100000
	r, _ := newRunner(t, st, state, pipeline(t, true), o)
	ctx, cancel := context.WithCancel(context.Background())
	written := 0
	st.writeHook = func(d *fakeDoc, _ []byte) (WriteResult, bool) {
		written++
		if written == 25 {
			cancel()
		}
		return WriteResult{}, false
	}
	_ = r.Run(ctx)
	cp, err := r.loadBackfill(context.Background(), Slice{})
	if err != nil || cp.Cursor == nil || cp.Done {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	st.writeHook = nil
	r2, _ := newRunner(t, st, state, pipeline(t, true), o)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	_ = r2.Run(ctx2)
	for i := 0; i < 50; i++ {
		if st.writesOf("alerts-1", fmt.Sprintf("a%03d", i)) != 1 {
			t.Fatalf("a%03d not written exactly once", i)
		}
	}
	cp, _ = r2.loadBackfill(context.Background(), Slice{})
	if !cp.Done {
		t.Fatalf("backfill not done: %+v", cp)
	}
}

// TestLiveNotDelayedByBackfill: new alerts are enriched within a poll while a slow,
// rate-limited backfill of the history runs.
func TestLiveNotDelayedByBackfill(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "history", 200, time.Now().Add(-10*24*time.Hour))
	o := testOptions()
	o.BackfillRate = 20 // 10 s for the history
	r, m := newRunner(t, st, newFakeState(st), pipeline(t, true), o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	st.add("live", "new", time.Now(), alertSrc("T1021.002"))
	added := time.Now()
	for st.writesOf("live", "new") == 0 {
		if time.Since(added) > time.Second {
			t.Fatal("live alert not enriched within a second while the backfill runs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if left := testutil.ToFloat64(m.BackfillLeft); left <= 0 {
		t.Fatalf("backfill remaining %v: the backfill should still be running", left)
	}
}

// fakeDetails is a DetailPublisher that fails as told, then blocks until released.
type fakeDetails struct {
	mu      sync.Mutex
	calls   int
	fail    []error // one per call, then nil
	release chan struct{}
}

func (f *fakeDetails) PublishDetails(ctx context.Context, src enrich.DetailSource) error {
	f.mu.Lock()
	f.calls++
	var err error
	if len(f.fail) > 0 {
		err, f.fail = f.fail[0], f.fail[1:]
	}
	f.mu.Unlock()
	if err == nil && f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
		}
	}
	return err
}

// Details are published in the background: a detail index that hangs does not hold up
// enrichment; an unavailable one is retried, a refused one is not; RunOnce returns once
// the publication is over.
func TestDetailsDoNotBlockEnrichment(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 10, time.Now())
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	pub := &fakeDetails{fail: []error{fmt.Errorf("x: %w", ErrUnavailable), fmt.Errorf("x: %w", ErrUnavailable)}, release: make(chan struct{})}
	r.SetDetails(pub)
	done := make(chan Summary)
	go func() {
		sum, _ := r.RunOnce(context.Background())
		done <- sum
	}()
	deadline := time.Now().Add(10 * time.Second)
	for st.root("alerts-1", "a009", root)["status"] != "enriched" {
		if time.Now().After(deadline) {
			t.Fatal("alerts not enriched while the details publication hangs")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("RunOnce returned while the details publication was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	close(pub.release)
	if sum := <-done; sum.Written != 10 {
		t.Fatalf("written %d", sum.Written)
	}
	if pub.calls != 3 {
		t.Fatalf("%d publication calls, want 3 (two unavailable, then one that succeeds)", pub.calls)
	}

	refused := &fakeDetails{fail: []error{fmt.Errorf("x: %w", ErrRefused)}}
	r2, _ := newRunner(t, st, newFakeState(st), pipeline(t, false), testOptions())
	r2.SetDetails(refused)
	if _, err := r2.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if refused.calls != 1 {
		t.Fatalf("a refused publication was tried %d times", refused.calls)
	}
}

// A running daemon publishes its details again every DetailsHeartbeat (renewing its
// ruleset's use, so no other enricher removes them), not at every poll.
func TestDetailsHeartbeat(t *testing.T) {
	st := newFakeStore()
	loadAlerts(st, "alerts-1", 5, time.Now())
	r, _ := newRunner(t, st, newFakeState(st), pipeline(t, true), testOptions())
	pub := &fakeDetails{}
	r.SetDetails(pub)
	now := time.Now()
	r.now = func() time.Time { return now }
	calls := func() int {
		r.waitDetails()
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.calls
	}
	for i, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {time.Minute, 1}, {DetailsHeartbeat, 2}, {time.Second, 2}} {
		now = now.Add(step.advance)
		if err := r.PollLive(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := calls(); got != step.want {
			t.Fatalf("poll %d: %d publications, want %d", i, got, step.want)
		}
	}
}
