package elastic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// Options tune the Enricher.
type Options struct {
	Indices         []string
	Extra           map[string]any
	BatchSize       int
	MaxRetries      int
	BackoffInitial  time.Duration
	BackoffMax      time.Duration
	PollInterval    time.Duration
	ShutdownTimeout time.Duration
	InstallMappings bool
	// ExtraMappings are field mappings of plugin namespaces, put beside the root's.
	ExtraMappings map[string]map[string]any
}

// Enricher polls Elasticsearch for pending alerts, runs the pipeline, and writes back.
type Enricher struct {
	c      *Client
	p      *enrich.Pipeline
	attack *enrich.AttackStage
	o      Options
	m      *metrics.Metrics
	log    *slog.Logger
	// Sleep is time.Sleep honouring ctx; replaceable in tests.
	sleep func(context.Context, time.Duration) error
	// OnPass, if set, is called after every pass that completed without error.
	OnPass func()
	// next holds a pipeline handed over by SetPipeline, taken up at the next pass.
	next atomic.Pointer[pipelinePair]
}

type pipelinePair struct {
	p      *enrich.Pipeline
	attack *enrich.AttackStage
}

// SetPipeline replaces the pipeline (e.g. after the rules were reloaded) from the next
// pass on; the pass in flight finishes with the old one. Safe to call from any goroutine.
func (e *Enricher) SetPipeline(p *enrich.Pipeline, attack *enrich.AttackStage) {
	e.next.Store(&pipelinePair{p: p, attack: attack})
}

// NewEnricher wires a client, a pipeline (whose first stage is the ATT&CK stage) and metrics.
func NewEnricher(c *Client, p *enrich.Pipeline, attack *enrich.AttackStage, o Options, m *metrics.Metrics, log *slog.Logger) *Enricher {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = 500 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffInitial {
		o.BackoffMax = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if m == nil {
		panic("elastic: NewEnricher needs metrics")
	}
	return &Enricher{c: c, p: p, attack: attack, o: o, m: m, log: log, sleep: enrich.Sleep}
}

// backoff returns the delay before retry n (0-based): exponential with full jitter.
func (e *Enricher) backoff(n int) time.Duration {
	d := e.o.BackoffInitial << min(n, 16)
	if d > e.o.BackoffMax || d <= 0 {
		d = e.o.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// query returns the search for pending alerts. Technique fields that every index maps
// as keyword are read from doc values; fields no index maps are not read (no query can
// select an alert by them); the rest, and what plugins read, come from _source.
func (e *Enricher) query(ctx context.Context) Query {
	var tech []string
	for _, f := range e.attack.TechniqueFields() {
		tech = append(tech, f.Path)
	}
	plan, err := e.c.PlanFields(ctx, e.o.Indices, tech)
	if err != nil {
		e.log.Debug("field capabilities unavailable; reading every field from _source", "err", err)
		plan = FieldPlan{}
	}
	skip := map[string]bool{}
	for _, f := range append(plan.DocValues, plan.Unmapped...) {
		skip[f] = true
	}
	var source []string
	for _, f := range e.sourceFields() {
		if !skip[f] {
			source = append(source, f)
		}
	}
	return Query{
		Indices:         e.o.Indices,
		TechniqueFields: e.attack.TechniqueFields(),
		Root:            e.attack.Namespace(),
		Hash:            e.attack.Ruleset().Hash(),
		Extra:           e.o.Extra,
		SourceFields:    source,
		DocValueFields:  plan.DocValues,
		BatchSize:       e.o.BatchSize,
	}
}

// PassResult sums up one pass.
type PassResult struct {
	PassStats
	Written int // alerts written successfully (updated or noop)
	Failed  int
	// Deferred counts alerts not written because a required stage was down.
	Deferred int
	// Partial counts alerts written without an optional stage, which stays pending.
	Partial int
}

// Pass enriches every alert pending when it starts, once. ctx cancellation stops between
// batches; the batch in flight finishes (bounded by ShutdownTimeout).
func (e *Enricher) Pass(ctx context.Context) (PassResult, error) {
	var pr PassResult
	if n := e.next.Swap(nil); n != nil {
		e.p, e.attack = n.p, n.attack
		e.log.Info("pipeline replaced", "ruleset", n.attack.Ruleset().Version(), "ruleset_hash", n.attack.Ruleset().Hash())
	}
	if e.o.InstallMappings {
		if updated, err := e.c.EnsureMappings(ctx, e.o.Indices, e.attack.Namespace(), e.o.ExtraMappings); err != nil {
			return pr, err
		} else if len(updated) > 0 {
			e.log.Info("put field mappings", "indices", updated, "root", e.attack.Namespace())
		}
	}
	st, err := e.c.Scan(ctx, e.query(ctx), func(ctx context.Context, alerts []*enrich.Alert) error {
		bctx, cancel := e.batchContext(ctx)
		defer cancel()
		e.process(bctx, alerts, &pr)
		if ctx.Err() != nil {
			return ctx.Err() // stop after the batch in flight
		}
		return nil
	})
	pr.PassStats = st
	e.m.Pending.Set(float64(st.Pending))
	if st.Pending == 0 || st.Oldest.IsZero() {
		e.m.Lag.Set(0)
	} else {
		e.m.Lag.Set(time.Since(st.Oldest).Seconds())
	}
	if err == nil && (pr.Written > 0 || pr.Failed > 0) {
		err = e.c.Refresh(ctx, e.o.Indices)
	}
	return pr, err
}

// batchContext is not cancelled by ctx at once: on cancellation, the batch in flight gets
// ShutdownTimeout to finish.
func (e *Enricher) batchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(e.o.ShutdownTimeout, cancel)
		context.AfterFunc(bctx, func() { t.Stop() })
	})
	return bctx, func() { stop(); cancel() }
}

// process enriches and writes one batch, handling every bulk item by its result.
func (e *Enricher) process(ctx context.Context, alerts []*enrich.Alert, pr *PassResult) {
	start := time.Now()
	defer func() { e.m.BatchDuration.Observe(time.Since(start).Seconds()) }()
	todo := alerts
	for attempt := 0; len(todo) > 0; attempt++ {
		results := e.p.Run(ctx, todo)
		e.clearStale(results)
		items := make([]BulkItem, 0, len(results))
		outcomes := make([]string, 0, len(results))
		for _, r := range results {
			if r.Outcome == enrich.OutcomeDeferred {
				pr.Deferred++
				e.m.AlertsProcessed.WithLabelValues("deferred").Inc()
				continue
			}
			outcome := e.attack.Status(r.Doc)
			if r.Outcome == enrich.OutcomePartial {
				outcome = "partial"
			}
			items = append(items, BulkItem{Alert: r.Alert, Doc: r.Doc})
			outcomes = append(outcomes, outcome)
		}
		res, err := e.bulk(ctx, items)
		if err != nil {
			// Only ctx cancellation (shutdown timeout) gets here: the alerts stay pending.
			e.log.Warn("batch not written", "alerts", len(items), "err", err)
			return
		}
		var conflicts, retries []*enrich.Alert
		for i, r := range res {
			e.m.BulkItems.WithLabelValues(r.Status.String()).Inc()
			a := items[i].Alert
			switch r.Status {
			case ItemUpdated, ItemNoop:
				pr.Written++
				if outcomes[i] == "partial" {
					pr.Partial++
				}
				e.m.AlertsProcessed.WithLabelValues(outcomes[i]).Inc()
				e.countProblems(items[i].Doc)
			case ItemConflict:
				conflicts = append(conflicts, a)
			case ItemRetry:
				retries = append(retries, a)
			case ItemNotFound:
				e.log.Info("alert deleted before write", "index", a.Index, "alert_id", a.ID)
			default:
				pr.Failed++
				e.m.AlertsProcessed.WithLabelValues("failed").Inc()
				e.log.Warn("alert update failed", "index", a.Index, "alert_id", a.ID, "status", r.Code, "reason", r.Reason)
			}
		}
		if len(conflicts)+len(retries) == 0 {
			return
		}
		if attempt >= e.o.MaxRetries {
			n := len(conflicts) + len(retries)
			pr.Failed += n
			e.m.AlertsProcessed.WithLabelValues("failed").Add(float64(n))
			e.log.Warn("retries exhausted; alerts stay pending for the next pass", "alerts", n, "attempts", attempt+1)
			return
		}
		todo = retries
		if len(conflicts) > 0 {
			fresh, err := e.mget(ctx, conflicts)
			if err != nil {
				e.log.Warn("re-read after conflict failed; alerts stay pending", "alerts", len(conflicts), "err", err)
			} else {
				// Conflicting alerts that turned out to be done already were written by an
				// earlier attempt whose response was lost.
				pr.Written += len(conflicts) - len(fresh)
				todo = append(todo, fresh...)
			}
		}
		if len(retries) > 0 {
			if e.sleep(ctx, e.backoff(attempt)) != nil {
				return
			}
		}
	}
}

func (e *Enricher) countProblems(doc map[string]any) {
	if root, ok := doc[e.attack.Namespace()].(*enrich.RootDoc); ok {
		for _, p := range root.Problems {
			e.m.ValuesSkipped.WithLabelValues(p.Reason).Inc()
		}
	}
}

// bulk sends items, retrying the whole request with backoff while Elasticsearch is
// unavailable; it gives up only when ctx ends.
func (e *Enricher) bulk(ctx context.Context, items []BulkItem) ([]ItemResult, error) {
	for n := 0; ; n++ {
		res, err := e.c.BulkUpdate(ctx, items)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			// A malformed request is a bug; do not hammer. Report and keep alerts pending.
			return nil, err
		}
		d := e.backoff(n)
		e.log.Warn("bulk request failed; retrying", "err", err, "in", d.String())
		if e.sleep(ctx, d) != nil {
			return nil, fmt.Errorf("bulk request: %w", ctx.Err())
		}
	}
}

// mget re-reads alerts after a conflict. Alerts that already carry the current ruleset
// hash and no pending stage are dropped: a write whose response was lost (Elasticsearch
// went down after applying it) is not repeated, so each alert is enriched exactly once.
func (e *Enricher) mget(ctx context.Context, alerts []*enrich.Alert) ([]*enrich.Alert, error) {
	root := e.attack.Namespace()
	fields := append(e.sourceFields(), root+".ruleset.hash", root+"."+enrich.PendingField)
	for n := 0; ; n++ {
		fresh, err := e.c.Mget(ctx, alerts, fields)
		if err == nil {
			out := fresh[:0]
			for _, a := range fresh {
				if !e.done(a) {
					out = append(out, a)
				}
			}
			return out, nil
		}
		if !errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		if e.sleep(ctx, e.backoff(n)) != nil {
			return nil, ctx.Err()
		}
	}
}

// RunOnce runs passes until nothing is pending, retrying with backoff while Elasticsearch
// is unavailable, and returns the summed result. It stops early, with an error, when a
// pass makes no progress (everything pending was deferred or failed).
func (e *Enricher) RunOnce(ctx context.Context) (PassResult, error) {
	var total PassResult
	prevPending, stuck := -1, 0
	for n := 0; ; {
		pr, err := e.Pass(ctx)
		total.Written += pr.Written
		total.Failed += pr.Failed
		total.Deferred += pr.Deferred
		total.Partial += pr.Partial
		total.Batches += pr.Batches
		if err != nil {
			e.m.Runs.WithLabelValues("error").Inc()
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			d := e.backoff(n)
			n++
			e.log.Warn("pass failed; retrying", "err", err, "in", d.String())
			if e.sleep(ctx, d) != nil {
				return total, ctx.Err()
			}
			continue
		}
		n = 0
		e.passOK()
		if pr.Pending == 0 {
			return total, nil
		}
		if prevPending >= 0 && pr.Pending >= prevPending {
			stuck++
		} else {
			stuck = 0
		}
		prevPending = pr.Pending
		if stuck >= 3 {
			return total, fmt.Errorf("%d alerts still pending after %d passes without progress: is %s.ruleset.hash mapped as a keyword on the alert indices?",
				pr.Pending, stuck+1, e.attack.Namespace())
		}
		if pr.Written == pr.Partial && pr.Written+pr.Failed+pr.Deferred >= pr.Pending {
			// Nothing but partial, failed or deferred work: another pass now would repeat it.
			return total, fmt.Errorf("%d alerts still pending (%d deferred, %d failed, %d waiting for an optional stage)",
				pr.Pending, pr.Deferred, pr.Failed, pr.Partial)
		}
	}
}

// Run polls until ctx ends: a pass, then a wait of PollInterval when nothing was pending.
func (e *Enricher) Run(ctx context.Context) error {
	for n := 0; ctx.Err() == nil; {
		pr, err := e.Pass(ctx)
		wait := e.o.PollInterval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.m.Runs.WithLabelValues("error").Inc()
			wait = e.backoff(n)
			n++
			e.log.Warn("pass failed; retrying", "err", err, "in", wait.String())
		default:
			n = 0
			e.passOK()
			if pr.Written > 0 {
				e.log.Info("pass done", "pending", pr.Pending, "written", pr.Written, "failed", pr.Failed,
					"deferred", pr.Deferred, "partial", pr.Partial)
				if pr.Written > pr.Partial {
					wait = 0 // more may have arrived meanwhile
				}
			}
		}
		if wait > 0 && e.sleep(ctx, wait) != nil {
			return nil
		}
	}
	return nil
}

func (e *Enricher) passOK() {
	e.m.Runs.WithLabelValues("success").Inc()
	e.m.LastSuccess.SetToCurrentTime()
	if e.OnPass != nil {
		e.OnPass()
	}
}

// done reports whether an alert already holds this ruleset's enrichment with no stage pending.
func (e *Enricher) done(a *enrich.Alert) bool {
	root := e.attack.Namespace()
	hash := enrich.Values(a.Source, root+".ruleset.hash")
	if len(hash) != 1 || hash[0] != e.attack.Ruleset().Hash() {
		return false
	}
	return len(enrich.Values(a.Source, root+"."+enrich.PendingField)) == 0
}

// sourceFields are the _source fields to fetch: what the stages read, and the plugin
// namespaces themselves, so that keys a plugin no longer writes can be cleared.
func (e *Enricher) sourceFields() []string {
	fields := e.p.Fields()
	for _, st := range e.p.Stages() {
		if ns := st.Stage.Namespace(); ns != e.attack.Namespace() {
			fields = append(fields, ns)
		}
	}
	return fields
}

// clearStale sets to null the keys of a plugin's namespace object that the alert holds
// but the plugin's new patch no longer has: a partial update merges objects, so a key
// left out (an owner removed from the inventory) would otherwise stay on the alert.
func (e *Enricher) clearStale(results []enrich.Result) {
	for _, r := range results {
		for ns, v := range r.Doc {
			if ns == e.attack.Namespace() {
				continue
			}
			next, ok := v.(map[string]any)
			if !ok {
				continue
			}
			if prev, ok := r.Alert.Source[ns].(map[string]any); ok {
				nullMissing(prev, next)
			}
		}
	}
}

func nullMissing(prev, next map[string]any) {
	for k, pv := range prev {
		nv, ok := next[k]
		if !ok {
			if pv != nil {
				next[k] = nil
			}
			continue
		}
		pm, ok1 := pv.(map[string]any)
		nm, ok2 := nv.(map[string]any)
		if ok1 && ok2 {
			nullMissing(pm, nm)
		}
	}
}
