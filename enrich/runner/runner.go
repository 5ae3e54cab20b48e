package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// Options tune the runner. Zero values are replaced by the defaults of enrich/config.
type Options struct {
	// BatchSize bounds a scan page and the alerts processed together.
	BatchSize int
	// MaxRetries bounds, per batch, the rounds of 409 re-reads and 429/5xx resends, and
	// the resends of a whole write while the store is unavailable.
	MaxRetries int
	// MaxAttempts is an alert's attempt budget: failures (an item refused for the alert,
	// retries exhausted, a stage that fails on it) before it is quarantined.
	MaxAttempts int
	// MaxAlertBytes: larger alerts are quarantined at once; 0 for no limit.
	MaxAlertBytes  int
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// PollInterval is the live path's period.
	PollInterval time.Duration
	// LiveWindow: alerts whose time field lies within it (from now) are the live path's;
	// older ones, and alerts without one, the backfill's.
	LiveWindow time.Duration
	// SweepInterval: how often the backfill sweeps the history again once it is done
	// for a generation, catching alerts indexed later than LiveWindow.
	SweepInterval time.Duration
	// BackfillRate bounds the backfill in alerts per second; 0 for no bound.
	BackfillRate float64
	// IndexRetry: how long an index left out waits before it is tried again.
	IndexRetry time.Duration
	// ShutdownTimeout bounds the batch in flight after ctx ends.
	ShutdownTimeout time.Duration
	// TechniqueFields select the alerts to scan (those carrying one).
	TechniqueFields []enrich.Field
	// Settle is how long RunOnce waits between sweeps for the store to make its writes
	// visible to search (Elasticsearch refreshes every second by default).
	Settle time.Duration
	// Scope names what the runner scans (the index patterns, query and time field), so
	// that the backfill's checkpoint follows a change of them, and replicas over the
	// same alerts find each other. Default "default".
	Scope string
	// Instance names this replica. When set, and the state store is a Roster, the
	// runner shares the work with the other replicas of its scope (see share.go);
	// empty: it works alone on everything.
	Instance string
	// Lease is how long a replica's lease lasts without renewal. Default DefaultLease.
	Lease time.Duration
}

// Runner runs the live and backfill paths over a Store with a pipeline. It is the
// daemon's loop, independent of the store: enrich/elastic provides the Store and
// StateStore for Elasticsearch and OpenSearch.
type Runner struct {
	store Store
	state StateStore
	o     Options
	m     *metrics.Metrics
	log   *slog.Logger
	proc  *processor

	mu      sync.Mutex
	want    *enrich.Pipeline // the pipeline to run; registered lazily
	cur     *generation      // registered: its number is known
	changed chan struct{}    // closed and replaced when cur changes

	details detailsLoop
	ms      *membership // nil: works alone

	health *health
	sleep  func(context.Context, time.Duration) error
	now    func() time.Time
}

// New returns a runner. The pipeline's generation number is registered with the state
// store on the first pass (the store may be down at start).
func New(store Store, state StateStore, p *enrich.Pipeline, o Options, m *metrics.Metrics, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.New(nil)
	}
	r := &Runner{store: store, state: state, o: o, m: m, log: log, want: p, changed: make(chan struct{}),
		sleep: enrich.Sleep, now: time.Now}
	r.health = newHealth(o.IndexRetry, m, log)
	r.proc = &processor{store: store, o: o, m: m, log: log, attempts: newAttempts(), written: newWritten(),
		health: r.health, sleep: r.sleepFn, now: r.nowFn}
	if ro, ok := state.(Roster); ok && o.Instance != "" {
		host, _ := os.Hostname()
		r.ms = &membership{roster: ro, self: Member{Instance: o.Instance, Session: newSession(),
			Started: time.Now().UTC(), Host: host, PID: os.Getpid()}}
		m.ReplicaInfo.WithLabelValues(o.Instance).Set(1)
	}
	return r
}

func (r *Runner) sleepFn(ctx context.Context, d time.Duration) error { return r.sleep(ctx, d) }
func (r *Runner) nowFn() time.Time                                   { return r.now() }

// SetPipeline replaces the pipeline (after a rules reload). The new generation is
// registered before its first write; the backfill restarts for it. Safe from any goroutine.
func (r *Runner) SetPipeline(p *enrich.Pipeline) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = p
}

// SetDetails makes the runner publish the mapping details of every pipeline it
// registers (its stages that are enrich.DetailSource), and renew their use every
// DetailsHeartbeat. Call it before Run.
func (r *Runner) SetDetails(p DetailPublisher) { r.details.pub = p }

// DetailsHeartbeat is how often a running daemon publishes its pipeline's details again:
// a publication that is there already only renews the ruleset's use, so that no other
// enricher removes the details this one's alerts link to.
const DetailsHeartbeat = time.Hour

// detailsLoop publishes mapping details in the background, one pipeline at a time, so
// that a detail index that is slow, full or refused never holds up enrichment: details
// are one click away from an alert, not part of it.
type detailsLoop struct {
	pub DetailPublisher

	mu      sync.Mutex
	want    *enrich.Pipeline // next to publish
	running bool
	last    time.Time // last publication attempt's start
	wg      sync.WaitGroup
}

// requestDetails publishes p's details soon (now, if nothing is being published).
func (r *Runner) requestDetails(ctx context.Context, p *enrich.Pipeline) {
	d := &r.details
	if d.pub == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = p
	d.last = r.now()
	if d.running {
		return
	}
	d.running = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			d.mu.Lock()
			p := d.want
			d.want = nil
			if p == nil || ctx.Err() != nil {
				d.running = false
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			r.publishDetails(ctx, p)
		}
	}()
}

// heartbeatDetails publishes the current pipeline's details again once DetailsHeartbeat
// has passed since the last publication.
func (r *Runner) heartbeatDetails(ctx context.Context, g *generation) {
	d := &r.details
	d.mu.Lock()
	due := d.pub != nil && r.now().Sub(d.last) >= DetailsHeartbeat
	d.mu.Unlock()
	if due {
		r.requestDetails(ctx, g.src)
	}
}

// waitDetails waits for the publication in progress, if any.
func (r *Runner) waitDetails() { r.details.wg.Wait() }

// publishDetails publishes the details of p's stages: an unavailable store is retried
// with backoff, MaxRetries times; what still fails is logged and left to the next
// publication (a reload or the heartbeat).
func (r *Runner) publishDetails(ctx context.Context, p *enrich.Pipeline) {
	for _, st := range p.Stages() {
		src, ok := st.Stage.(enrich.DetailSource)
		if !ok {
			continue
		}
		hash, _ := src.DetailVersion()
		for attempt := 0; ; attempt++ {
			err := r.details.pub.PublishDetails(ctx, src)
			if err == nil || ctx.Err() != nil {
				break
			}
			if !errors.Is(err, ErrUnavailable) || attempt >= max(r.o.MaxRetries, 1) {
				r.log.Error("mapping details not published; alerts link to details that may be missing until the next publication",
					"rules", short(hash), "err", err)
				break
			}
			wait := r.o.backoff(attempt)
			r.log.Warn("publishing mapping details failed; retrying", "rules", short(hash), "err", err, "in", wait.String())
			if r.sleep(ctx, wait) != nil {
				return
			}
		}
	}
}

// generation returns the registered generation of the wanted pipeline, registering it
// with the state store when it is new to this runner.
func (r *Runner) generation(ctx context.Context) (*generation, error) {
	r.mu.Lock()
	want, cur := r.want, r.cur
	r.mu.Unlock()
	if cur != nil && cur.src == want {
		return cur, nil
	}
	g := want.Generation()
	n, err := r.state.RegisterGeneration(ctx, g, want.StatusNamespace())
	if err != nil {
		return nil, fmt.Errorf("register generation %s: %w", g, err)
	}
	g.Number = n
	next := &generation{src: want, p: want.WithGeneration(n), gen: g}
	if !r.install(ctx, want, next) {
		return next, nil // replaced meanwhile; the next call registers the newer one
	}
	// Outside r.mu: a slow store must not hold up what reads the share.
	if newest, err := r.state.NewestGeneration(ctx); err == nil {
		r.m.NewestGen.Set(float64(newest.Number))
		if newest.Number > n {
			r.log.Warn("a newer generation is registered; alerts it enriched are left alone",
				"ours", n, "newest", newest.Number, "newest_fingerprint", short(newest.Hash), "newest_rules", newest.RulesVersion)
		}
	}
	return next, nil
}

// install makes next the current generation, unless the wanted pipeline changed
// meanwhile (false).
func (r *Runner) install(ctx context.Context, want *enrich.Pipeline, next *generation) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want != want {
		return false
	}
	old := r.cur
	r.cur = next
	if old == nil || old.src != want {
		r.requestDetails(ctx, want)
	}
	r.notifyLocked()
	r.health.reset()
	r.m.Generation.Set(float64(next.gen.Number))
	if old == nil || old.gen.Hash != next.gen.Hash {
		r.log.Info("generation registered", "generation", next.gen.Number, "fingerprint", short(next.gen.Hash), "rules", next.gen.RulesVersion)
	}
	return true
}

// notifyLocked wakes what waits for a change of generation or share. r.mu is held.
func (r *Runner) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Runner) changedCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Ready says whether the daemon is ready, with a detail text for /readyz.
func (r *Runner) Ready() (bool, string) {
	return r.health.status(3*r.o.PollInterval + r.o.BackoffMax + time.Minute)
}

// Problems returns the indices left out and why.
func (r *Runner) Problems() []IndexProblem { return r.health.list() }

// Run runs the live and the backfill path until ctx ends. The batch in flight when ctx
// ends finishes, bounded by ShutdownTimeout.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if r.sharing() {
		wg.Add(1)
		go func() { defer wg.Done(); r.runMembership(ctx) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); r.runLive(ctx) }()
	go func() { defer wg.Done(); r.runBackfill(ctx) }()
	wg.Wait()
	r.waitDetails()
	return nil
}

// prepare readies indices (nil: all) and records the outcome; an error is the store's
// as a whole.
func (r *Runner) prepare(ctx context.Context, indices []string) error {
	ready, problems, err := r.store.Prepare(ctx, indices)
	if err != nil {
		r.health.storeResult(err)
		return err
	}
	r.health.prepared(ready, problems)
	return nil
}

// admit prepares the indices of a page's alerts not seen before (a rollover), and
// returns the alerts whose index is usable.
func (r *Runner) admit(ctx context.Context, alerts []*enrich.Alert) ([]*enrich.Alert, error) {
	names := make([]string, 0, 4)
	for _, a := range alerts {
		names = append(names, a.Index)
	}
	if unknown := r.health.unknown(names); len(unknown) > 0 {
		if err := r.prepare(ctx, unknown); err != nil {
			return nil, err
		}
	}
	bad := map[string]bool{}
	for _, ix := range r.health.excluded() {
		bad[ix] = true
	}
	if len(bad) == 0 {
		return alerts, nil
	}
	out := alerts[:0:0]
	for _, a := range alerts {
		if !bad[a.Index] {
			out = append(out, a)
		}
	}
	return out, nil
}

// retryDue prepares again the indices left out whose retry time has come.
func (r *Runner) retryDue(ctx context.Context) {
	if due := r.health.due(); len(due) > 0 {
		if err := r.prepare(ctx, due); err != nil {
			r.log.Warn("retrying left-out indices failed", "indices", due, "err", err)
		}
	}
}

// hooks let a path watch a scan: before is called with each page before it is processed
// (rate limiting, progress) and may stop the scan by returning false; after is called
// once the page is written.
type hooks struct {
	before func(Page) bool
	after  func(Page)
}

// scan runs one scan and processes every page.
func (r *Runner) scan(ctx context.Context, g *generation, path string, spec ScanSpec, h hooks) (batchStats, Page, error) {
	var st batchStats
	var first Page
	spec.Root = g.p.StatusNamespace()
	spec.Generation = g.gen
	spec.TechniqueFields = r.o.TechniqueFields
	spec.Exclude = r.health.excluded()
	if spec.PageSize <= 0 {
		spec.PageSize = r.o.BatchSize
	}
	sc, err := r.store.Scan(ctx, spec)
	if err != nil {
		r.health.storeResult(err)
		return st, first, err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	// Reads, processing and writes overlap: the next page is read while the current one
	// is processed, and up to batchesInFlight batches are processed and written at once
	// (one's bulk request in flight while the next is computed). Pages may overlap (a
	// live scan whose first page is full goes on through a point in time from the top;
	// a reopened point in time re-reads the last page's time): an alert already in a
	// batch in flight is left out of the next one. Each page's after hook runs in page
	// order once its batch is done, and never after a batch failed (the cursor stays at
	// the last page fully done). At most batchesInFlight+2 pages are held per scan.
	type fetched struct {
		page Page
		err  error
	}
	fetch := func() chan fetched {
		ch := make(chan fetched, 1)
		go func() {
			p, err := sc.Next(ctx)
			ch <- fetched{p, err}
		}()
		return ch
	}
	type batch struct {
		page Page
		keys []string
		done chan batchResult
	}
	var inflight []batch
	busy := map[string]bool{} // keys of the alerts in the batches in flight
	failed := false
	next := fetch()
	// finish waits for the oldest batch and accounts for it.
	finish := func() error {
		b := inflight[0]
		inflight = inflight[1:]
		res := <-b.done
		for _, k := range b.keys {
			delete(busy, k)
		}
		st.add(res.st)
		if res.err != nil {
			failed = true
			if errors.Is(res.err, ErrRefused) {
				r.health.storeResult(res.err)
			}
			return res.err
		}
		if h.after != nil && !failed && ctx.Err() == nil {
			h.after(b.page)
		}
		return nil
	}
	// drain ends the scan: every batch in flight finishes (they hold bounded contexts)
	// and the scanner's last read comes back before it is closed.
	drain := func(err error) error {
		for len(inflight) > 0 {
			if e := finish(); err == nil {
				err = e
			}
		}
		if next != nil {
			<-next
			next = nil
		}
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	for n := 0; ; n++ {
		f := <-next
		next = nil
		page, err := f.page, f.err
		if err != nil {
			r.health.storeResult(err)
			err = drain(err)
			return st, first, err
		}
		if n == 0 {
			first = page
		}
		if len(page.Alerts) == 0 || (h.before != nil && !h.before(page)) {
			err = drain(nil)
			return st, first, err
		}
		next = fetch()
		alerts, err := r.admit(ctx, page.Alerts)
		if err != nil {
			err = drain(err)
			return st, first, err
		}
		if len(inflight) >= batchesInFlight {
			if err := finish(); err != nil {
				err = drain(err)
				return st, first, err
			}
		}
		if ctx.Err() != nil {
			err = drain(nil)
			return st, first, err
		}
		b := batch{page: page, done: make(chan batchResult, 1)}
		fresh := alerts[:0:0]
		for _, a := range alerts {
			if k := a.Key(); !busy[k] {
				busy[k] = true
				b.keys = append(b.keys, k)
				fresh = append(fresh, a)
			}
		}
		inflight = append(inflight, b)
		go func() {
			bctx, cancel := r.batchContext(ctx)
			defer cancel()
			bs, err := r.proc.process(bctx, g, path, fresh)
			b.done <- batchResult{bs, err}
		}()
	}
}

// batchesInFlight is how many batches a scan processes and writes at once.
const batchesInFlight = 2

type batchResult struct {
	st  batchStats
	err error
}

// batchContext is not cancelled by ctx at once: on cancellation, the batch in flight
// gets ShutdownTimeout to finish.
func (r *Runner) batchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.o.ShutdownTimeout, cancel)
		context.AfterFunc(bctx, func() { t.Stop() })
	})
	return bctx, func() { stop(); cancel() }
}

func passResult(st batchStats, err error) string {
	switch {
	case err != nil:
		return "error"
	case st.progress():
		return "progress"
	case st.left()+st.waiting > 0:
		return "no_progress"
	}
	return "idle"
}

// runLive polls the live window every PollInterval: alerts whose time field is recent.
// Each poll's work is what is pending in the window, not the history.
func (r *Runner) runLive(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		start := r.now()
		st, err := r.livePoll(ctx)
		result := passResult(st, err)
		r.m.Passes.WithLabelValues(metrics.PathLive, result).Inc()
		wait := r.o.PollInterval - r.now().Sub(start)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait = r.o.backoff(failures)
			failures++
			r.log.Warn("live poll failed; retrying", "err", err, "in", wait.String())
		default:
			failures = 0
			r.health.storeResult(nil)
			r.m.LastSuccess.WithLabelValues(metrics.PathLive).SetToCurrentTime()
			if st.written+st.quarantined > 0 {
				r.log.Info("live poll", "written", st.written, "quarantined", st.quarantined, "failed", st.failed,
					"deferred", st.deferred, "took", r.now().Sub(start).Round(time.Millisecond).String())
			}
			if !st.progress() {
				wait = max(wait, r.o.PollInterval/2)
			}
		}
		if wait > 0 && r.sleep(ctx, wait) != nil {
			return
		}
	}
}

func (r *Runner) livePoll(ctx context.Context) (batchStats, error) {
	sh, changed, err := r.waitShare(ctx)
	if err != nil {
		return batchStats{}, nil // ctx ended
	}
	g, err := r.generation(ctx)
	if err != nil {
		r.health.storeResult(err)
		return batchStats{}, err
	}
	r.heartbeatDetails(ctx, g)
	r.retryDue(ctx)
	since := r.now().Add(-r.o.LiveWindow)
	st, first, err := r.scan(ctx, g, metrics.PathLive, ScanSpec{Since: since, WantTotal: true, Slice: sh.slice}, hooks{before: func(p Page) bool {
		select {
		case <-changed: // a new generation, or a new division of the work: poll again
			return false
		default:
		}
		if p.Total >= 0 {
			r.m.LivePending.Set(float64(p.Total))
			r.m.SetOldest(p.Oldest)
		}
		return true
	}})
	if err == nil && first.Total <= 0 {
		r.m.LivePending.Set(0)
		r.m.SetOldest(time.Time{})
	}
	if err == nil && st.left() == 0 {
		r.m.SetOldest(time.Time{})
	}
	return st, err
}

// backfillState is the backfill's checkpoint, kept in the state store so a restart
// resumes where it stopped.
type backfillState struct {
	Generation int64     `json:"generation"`
	Hash       string    `json:"hash"`
	Started    time.Time `json:"started"`
	Cursor     *Cursor   `json:"cursor,omitempty"`
	Done       bool      `json:"done"`
	DoneAt     time.Time `json:"done_at,omitzero"`
	Processed  int       `json:"processed"`
}

// backfillKey names the backfill's checkpoint: one per scope, and per slice when
// replicas share the work (a new division starts its slices' sweeps afresh).
func (r *Runner) backfillKey(s Slice) string {
	k := "backfill-" + r.scope()
	if s.Max > 1 {
		k += fmt.Sprintf("-slice-%d-of-%d", s.ID, s.Max)
	}
	return k
}

// runBackfill sweeps the history newest first for alerts the current generation has
// work for: after a ruleset or version change (every enriched alert), and then every
// SweepInterval (alerts indexed late). It is rate-limited and resumable.
func (r *Runner) runBackfill(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		changed := r.changedCh()
		wait, err := r.backfillStep(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait = r.o.backoff(failures)
			failures++
			r.m.Passes.WithLabelValues(metrics.PathBackfill, "error").Inc()
			r.log.Warn("backfill failed; retrying", "err", err, "in", wait.String())
		default:
			failures = 0
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// backfillStep runs or resumes a sweep when one is due and returns how long to wait
// before the next.
func (r *Runner) backfillStep(ctx context.Context) (time.Duration, error) {
	sh, changed, err := r.waitShare(ctx)
	if err != nil {
		return 0, nil // ctx ended
	}
	g, err := r.generation(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := r.loadBackfill(ctx, sh.slice)
	if err != nil {
		return 0, err
	}
	if cp.Generation != g.gen.Number || cp.Hash != g.gen.Hash {
		cp = backfillState{Generation: g.gen.Number, Hash: g.gen.Hash, Started: r.now()}
		r.log.Info("backfill starts for a new generation", "generation", g.gen.Number, "fingerprint", short(g.gen.Hash))
	}
	if cp.Done {
		if next := cp.DoneAt.Add(r.o.SweepInterval); r.now().Before(next) {
			return next.Sub(r.now()), nil
		}
		cp = backfillState{Generation: g.gen.Number, Hash: g.gen.Hash, Started: r.now()}
	}
	st, complete, err := r.sweep(ctx, g, &cp, metrics.PathBackfill, true, sh, changed)
	r.m.Passes.WithLabelValues(metrics.PathBackfill, passResult(st, err)).Inc()
	if err != nil {
		_ = r.saveBackfill(context.WithoutCancel(ctx), sh.slice, cp)
		return 0, err
	}
	if !complete {
		_ = r.saveBackfill(context.WithoutCancel(ctx), sh.slice, cp)
		return 0, nil // the generation changed, or ctx ended: go round
	}
	r.m.LastSuccess.WithLabelValues(metrics.PathBackfill).SetToCurrentTime()
	if st.failed > 0 {
		// Alerts failed: sweep again soon, so that their attempts count towards their
		// quarantine; only what is still pending is read again.
		cp.Cursor = nil
		return r.o.PollInterval, r.saveBackfill(ctx, sh.slice, cp)
	}
	cp.Done, cp.DoneAt, cp.Cursor = true, r.now(), nil
	r.m.BackfillGen.Set(float64(g.gen.Number))
	if err := r.saveBackfill(ctx, sh.slice, cp); err != nil {
		return 0, err
	}
	return r.o.SweepInterval, nil
}

// sweep scans the history (outside the live window) newest first from cp's cursor,
// rate-limited when limit is set, saving the cursor as it goes. complete is false when
// it stopped early (ctx ended, the generation changed).
// sh is the share it works on; it stops when changed is closed (a new generation or
// division of the work).
func (r *Runner) sweep(ctx context.Context, g *generation, cp *backfillState, path string, limit bool, sh share, changed <-chan struct{}) (batchStats, bool, error) {
	if err := r.prepareAll(ctx); err != nil {
		return batchStats{}, false, err
	}
	spec := ScanSpec{Stable: true, WantTotal: true, Slice: sh.slice}
	if path == metrics.PathBackfill {
		spec.Until = r.now().Add(-r.o.LiveWindow)
	}
	if c := cp.Cursor; c != nil {
		if c.Missing {
			spec.UntilMissing = true
		} else if !c.Time.IsZero() && (spec.Until.IsZero() || c.Time.Before(spec.Until)) {
			spec.Until = c.Time
		}
	}
	var limiter *rate.Limiter
	if limit && r.o.BackfillRate > 0 {
		limiter = rate.NewLimiter(rate.Limit(r.o.BackfillRate), max(r.o.BatchSize, int(r.o.BackfillRate)))
	}
	prog := newProgress(r.now())
	lastSave, lastLog := r.now(), r.now()
	stopped := false
	after := func(p Page) {
		c := p.Cursor
		cp.Cursor = &c
		now := r.now()
		if path != metrics.PathBackfill {
			return
		}
		if now.Sub(lastSave) >= 10*time.Second {
			lastSave = now
			_ = r.saveBackfill(ctx, sh.slice, *cp)
		}
		if now.Sub(lastLog) >= 30*time.Second {
			lastLog = now
			left, rt, eta := prog.estimate(now)
			r.log.Info("backfill progress", "generation", g.gen.Number, "remaining", left,
				"rate", fmt.Sprintf("%.0f/s", rt), "eta", eta.Round(time.Second).String(), "processed", cp.Processed)
		}
	}
	before := func(p Page) bool {
		select {
		case <-changed: // a new generation, or a new division of the work
			stopped = true
			return false
		default:
		}
		if p.Total >= 0 {
			prog.total = p.Total
			if path == metrics.PathBackfill {
				r.countQuarantined(ctx, g)
			}
		}
		if limiter != nil {
			if limiter.WaitN(ctx, min(len(p.Alerts), limiter.Burst())) != nil {
				stopped = true
				return false
			}
		}
		cp.Processed += len(p.Alerts)
		prog.add(len(p.Alerts), r.now())
		if path == metrics.PathBackfill {
			left, rt, eta := prog.estimate(r.now())
			r.m.BackfillLeft.Set(float64(left))
			r.m.BackfillRate.Set(rt)
			r.m.BackfillETA.Set(eta.Seconds())
		}
		return true
	}
	st, _, err := r.scan(ctx, g, path, spec, hooks{before: before, after: after})
	if path == metrics.PathBackfill {
		r.m.BackfillLeft.Set(0)
		r.m.BackfillETA.Set(0)
		r.m.BackfillRate.Set(0)
	}
	if err != nil {
		return st, false, err
	}
	return st, !stopped && ctx.Err() == nil, nil
}

// prepareAll readies every index the patterns match (once per generation) and retries
// the left-out ones that are due.
func (r *Runner) prepareAll(ctx context.Context) error {
	if err := r.prepare(ctx, nil); err != nil {
		return err
	}
	r.retryDue(ctx)
	return nil
}

func (r *Runner) countQuarantined(ctx context.Context, g *generation) {
	if c, ok := r.store.(interface {
		CountQuarantined(context.Context, string, enrich.Generation) (int, error)
	}); ok {
		if n, err := c.CountQuarantined(ctx, g.p.StatusNamespace(), g.gen); err == nil {
			r.m.Quarantined.Set(float64(n))
		}
	}
}

func (r *Runner) loadBackfill(ctx context.Context, s Slice) (backfillState, error) {
	var cp backfillState
	b, err := r.state.Load(ctx, r.backfillKey(s))
	if err != nil || b == nil {
		return cp, err
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		r.log.Warn("backfill checkpoint unreadable; starting over", "err", err)
		return backfillState{}, nil
	}
	return cp, nil
}

func (r *Runner) saveBackfill(ctx context.Context, s Slice, cp backfillState) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return r.state.Save(ctx, r.backfillKey(s), b)
}

// Summary sums up RunOnce.
type Summary struct {
	// Written alerts, of which Partial without an optional stage.
	Written, Partial int
	// Quarantined in this run; Failed, Deferred and Waiting are what the last sweep left
	// pending: failed attempts, a required stage down, an optional stage still down.
	Quarantined, Failed, Deferred, Waiting int
	// Skipped: read but already done, newer, or quarantined before.
	Skipped  int
	Problems []IndexProblem
}

// RunOnce enriches everything pending, history and live window alike, without rate
// limit, and returns when nothing is left that it can do. Alerts that fail are tried
// again in further sweeps until they are written or quarantined. It returns an error
// naming what is left: indices left out, alerts quarantined or deferred.
func (r *Runner) RunOnce(ctx context.Context) (Summary, error) {
	defer r.waitDetails() // the details of what it wrote are there when it returns
	var sum Summary
	failures := 0
	deadline := r.now().Add(r.o.BackoffMax*time.Duration(max(r.o.MaxRetries, 1)) + time.Minute)
	for sweeps := 0; ctx.Err() == nil; {
		g, err := r.generation(ctx)
		var st batchStats
		if err == nil {
			cp := backfillState{}
			// run --once does not join the roster: it works on everything.
			st, _, err = r.sweep(ctx, g, &cp, metrics.PathOnce, false, everything, r.changedCh())
		}
		sum.Written += st.written
		sum.Partial += st.partial
		sum.Quarantined += st.quarantined
		sum.Skipped += st.skipped
		r.m.Passes.WithLabelValues(metrics.PathOnce, passResult(st, err)).Inc()
		if err != nil {
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			if errors.Is(err, ErrRefused) || r.now().After(deadline) {
				sum.Problems = r.health.list()
				return sum, err
			}
			d := r.o.backoff(failures)
			failures++
			r.log.Warn("pass failed; retrying", "err", err, "in", d.String())
			if r.sleep(ctx, d) != nil {
				return sum, ctx.Err()
			}
			continue
		}
		failures = 0
		deadline = r.now().Add(r.o.BackoffMax*time.Duration(max(r.o.MaxRetries, 1)) + time.Minute)
		r.health.storeResult(nil)
		sweeps++
		sum.Failed, sum.Deferred, sum.Waiting = st.failed, st.deferred, st.waiting
		// Stale reads are alerts written moments ago that search does not show
		// yet: sweep again after the settle time rather than stop short.
		if st.stale == 0 && (st.left()+st.partial == 0 || !st.progress()) {
			break
		}
		if sweeps > r.o.MaxAttempts+r.o.MaxRetries+2 {
			break
		}
		// A moment for the store to make the writes visible to search.
		if r.sleep(ctx, r.o.Settle) != nil {
			return sum, ctx.Err()
		}
	}
	sum.Problems = r.health.list()
	var msgs []string
	for _, p := range sum.Problems {
		msgs = append(msgs, p.Error())
	}
	if sum.Quarantined > 0 {
		msgs = append(msgs, fmt.Sprintf("%d alerts quarantined (see <root>.quarantine.reason on them; requeue with `enricher requeue`)", sum.Quarantined))
	}
	if sum.Deferred > 0 {
		msgs = append(msgs, fmt.Sprintf("%d alerts deferred: a required plugin is down", sum.Deferred))
	}
	if sum.Waiting > 0 {
		msgs = append(msgs, fmt.Sprintf("%d alerts wait for an optional plugin", sum.Waiting))
	}
	if sum.Failed > 0 {
		msgs = append(msgs, fmt.Sprintf("%d alerts failed and are still pending", sum.Failed))
	}
	if len(msgs) > 0 {
		sort.Strings(msgs)
		return sum, errors.New(strings.Join(msgs, "; "))
	}
	return sum, ctx.Err()
}

// progress estimates a sweep's rate and what is left.
type progress struct {
	total, done int
	start       time.Time
	rate        float64 // alerts per second, moving average
	last        time.Time
}

func newProgress(now time.Time) *progress { return &progress{total: -1, start: now, last: now} }

func (p *progress) add(n int, now time.Time) {
	p.done += n
	dt := now.Sub(p.last).Seconds()
	p.last = now
	if dt <= 0 {
		return
	}
	inst := float64(n) / dt
	if p.rate == 0 {
		p.rate = inst
	} else {
		p.rate = 0.8*p.rate + 0.2*inst
	}
}

func (p *progress) estimate(now time.Time) (left int, rate float64, eta time.Duration) {
	if p.total >= 0 {
		left = max(p.total-p.done, 0)
	}
	rate = p.rate
	if rate > 0 {
		eta = time.Duration(float64(left) / rate * float64(time.Second))
	}
	return left, rate, eta
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// PollLive runs one poll of the live path, as Run does every PollInterval (benchmarks).
func (r *Runner) PollLive(ctx context.Context) error {
	_, err := r.livePoll(ctx)
	return err
}

// newSession returns a random token that tells this process's lease from another
// process's under the same instance name.
func newSession() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
