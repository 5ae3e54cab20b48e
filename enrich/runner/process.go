package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// batchStats sums up what happened to one batch.
type batchStats struct {
	written     int // alerts written (enriched, partial)
	partial     int // of which written without an optional stage
	noop        int // nothing would change
	skipped     int // done, newer, quarantined, or a stale read of our own write
	stale       int // of which a stale read: search has not caught up with our write yet
	deferred    int // a required stage is down
	waiting     int // enriched by this generation, an optional stage still down
	failed      int // failed attempts counted (not yet quarantined)
	quarantined int
	gone        int
	transient   int // left pending because the store was unavailable
}

func (s *batchStats) add(o batchStats) {
	s.written += o.written
	s.partial += o.partial
	s.noop += o.noop
	s.skipped += o.skipped
	s.stale += o.stale
	s.deferred += o.deferred
	s.waiting += o.waiting
	s.failed += o.failed
	s.quarantined += o.quarantined
	s.gone += o.gone
	s.transient += o.transient
}

// progress: something changed in the store, or an alert came closer to its quarantine.
func (s batchStats) progress() bool { return s.written+s.quarantined+s.failed > 0 }

// left: alerts still pending after the batch, through no fault of their own.
func (s batchStats) left() int { return s.deferred + s.transient + s.failed }

// generation is a pipeline together with the number the state store gave its fingerprint.
type generation struct {
	src *enrich.Pipeline // as given to the runner
	p   *enrich.Pipeline // stamped with the number
	gen enrich.Generation
}

// processor enriches and writes batches: the part of the runner shared by every path
// (live, backfill, once) and by the offline command.
type processor struct {
	store    Store
	o        Options
	m        *metrics.Metrics
	log      *slog.Logger
	attempts *attempts
	written  *written
	health   *health
	sleep    func(context.Context, time.Duration) error
	now      func() time.Time

	newerOnce sync.Map // generation number -> logged
}

// fields are the top-level members decoded from each alert: what the stages read, the
// root and the plugin namespaces.
func (g *generation) fields() []string {
	fs := append([]string(nil), g.p.Fields()...)
	for _, st := range g.p.Stages() {
		fs = append(fs, st.Stage.Namespace())
	}
	return fs
}

// process enriches and writes one batch, handling every write by its result. It
// returns an error only when the store refused a whole request (permanent) or ctx ended.
func (p *processor) process(ctx context.Context, g *generation, path string, alerts []*enrich.Alert) (batchStats, error) {
	start := p.now()
	defer func() { p.m.BatchDuration.Observe(p.now().Sub(start).Seconds()) }()
	var st batchStats
	root := g.p.StatusNamespace()
	fields := g.fields()
	todo := alerts
	for round := 0; len(todo) > 0; round++ {
		work, states := p.classify(ctx, g, path, root, fields, todo, &st)
		results := g.p.Run(ctx, work)
		items, outcomes, quarantine := p.prepareWrites(g, path, root, results, states, &st)
		res, err := p.write(ctx, items)
		if err != nil {
			st.transient += len(items)
			if errors.Is(err, ErrRefused) {
				return st, err
			}
			p.log.Warn("batch not written; its alerts stay pending", "path", path, "alerts", len(items), "err", err)
			return st, err
		}
		var conflicts, retries []*enrich.Alert
		for i, r := range res {
			p.m.BulkItems.WithLabelValues(r.Status.String()).Inc()
			a := items[i].Alert
			switch r.Status {
			case ItemWritten:
				st.written++
				if outcomes[i] == "partial" {
					st.partial++
				}
				p.written.add(a.Key(), r.SeqNo, r.PrimaryTerm)
				p.attempts.clear(a.Key())
				p.m.AlertsProcessed.WithLabelValues(path, outcomes[i]).Inc()
			case ItemConflict:
				conflicts = append(conflicts, a)
			case ItemRetry:
				retries = append(retries, a)
			case ItemGone:
				st.gone++
				p.log.Info("alert deleted before write", "index", a.Index, "alert_id", a.ID)
			case ItemIndexFailed:
				st.transient++
				p.health.fromWrite(a.Index, r)
			default:
				if q, ok := p.fail(g, path, a, fmt.Sprintf("write %d %s", r.Code, r.Reason), &st); ok {
					quarantine = append(quarantine, q)
				}
			}
		}
		if len(quarantine) > 0 {
			p.quarantine(ctx, g, path, quarantine, &st)
		}
		if len(conflicts)+len(retries) == 0 {
			break
		}
		if round >= p.o.MaxRetries {
			var qs []quarantineItem
			for _, a := range append(conflicts, retries...) {
				if q, ok := p.fail(g, path, a, fmt.Sprintf("retries exhausted after %d rounds", round+1), &st); ok {
					qs = append(qs, q)
				}
			}
			p.quarantine(ctx, g, path, qs, &st)
			break
		}
		todo = retries
		if len(conflicts) > 0 {
			fresh, err := p.store.Reread(ctx, conflicts)
			if err != nil {
				st.transient += len(conflicts)
				p.log.Warn("re-read after conflict failed; alerts stay pending", "alerts", len(conflicts), "err", err)
			} else {
				st.gone += len(conflicts) - len(fresh)
				todo = append(todo, fresh...)
			}
		}
		if len(retries) > 0 {
			if p.sleep(ctx, p.o.backoff(round)) != nil {
				st.transient += len(todo)
				return st, ctx.Err()
			}
		}
	}
	return st, nil
}

// classify decodes each alert and keeps those the generation has work for.
func (p *processor) classify(ctx context.Context, g *generation, path, root string, fields []string, alerts []*enrich.Alert, st *batchStats) ([]*enrich.Alert, map[*enrich.Alert]enrich.State) {
	work := make([]*enrich.Alert, 0, len(alerts))
	states := make(map[*enrich.Alert]enrich.State, len(alerts))
	for _, a := range alerts {
		key := a.Key()
		if p.written.stale(key, a.SeqNo, a.PrimaryTerm) {
			st.skipped++
			st.stale++
			continue
		}
		if p.attempts.localQuarantine(key, g.gen.Number) {
			st.skipped++
			continue
		}
		if p.o.MaxAlertBytes > 0 && len(a.Raw) > p.o.MaxAlertBytes {
			// Another attempt cannot cure these: quarantine at once, unless the alert is
			// quarantined (or done) already and a search that lags shows it again.
			if src, err := enrich.DecodeMembers(a.Raw, []string{root}); err == nil {
				if c := g.gen.Classify(enrich.ReadState(src, root)); c != enrich.NeedsEnrichment && c != enrich.NeedsStages {
					st.skipped++
					continue
				}
			}
			p.quarantine(ctx, g, path, []quarantineItem{{alert: a, attempts: 1,
				reason: fmt.Sprintf("alert is %d bytes, over daemon.max_alert_bytes (%d)", len(a.Raw), p.o.MaxAlertBytes)}}, st)
			continue
		}
		if a.Source == nil {
			src, err := enrich.DecodeMembers(a.Raw, fields)
			if err != nil {
				p.quarantine(ctx, g, path, []quarantineItem{{alert: a, attempts: 1, reason: "read _source: " + err.Error()}}, st)
				continue
			}
			a.Source = src
		}
		s := enrich.ReadState(a.Source, root)
		switch g.gen.Classify(s) {
		case enrich.Done:
			st.skipped++
			p.m.AlertsProcessed.WithLabelValues(path, "skipped_done").Inc()
			continue
		case enrich.Quarantined:
			st.skipped++
			continue
		case enrich.Newer:
			st.skipped++
			p.m.AlertsProcessed.WithLabelValues(path, "skipped_newer").Inc()
			if _, logged := p.newerOnce.LoadOrStore(s.Generation, true); !logged {
				p.log.Warn("alerts enriched by a newer generation are left alone",
					"their_generation", s.Generation, "our_generation", g.gen.Number, "example_index", a.Index, "example_id", a.ID)
			}
			continue
		}
		states[a] = s
		work = append(work, a)
	}
	return work, states
}

// prepareWrites turns pipeline results into writes: the root and plugin namespaces
// spliced into the alert's _source.
func (p *processor) prepareWrites(g *generation, path, root string, results []enrich.Result, states map[*enrich.Alert]enrich.State,
	st *batchStats) (items []WriteItem, outcomes []string, quarantine []quarantineItem) {
	for _, r := range results {
		a := r.Alert
		if r.AlertErr != nil {
			if q, ok := p.fail(g, path, a, r.AlertErr.Error(), st); ok {
				quarantine = append(quarantine, q)
				continue
			}
		}
		switch r.Outcome {
		case enrich.OutcomeDeferred:
			st.deferred++
			p.m.AlertsProcessed.WithLabelValues(path, "deferred").Inc()
			continue
		case enrich.OutcomeFailed:
			continue
		case enrich.OutcomePartial:
			if s := states[a]; s.Generation == g.gen.Number && s.Hash == g.gen.Hash && sameSet(s.Pending, r.Pending) {
				st.waiting++ // nothing new to write: the optional stage is still down
				continue
			}
		}
		src, err := spliceDoc(a.Raw, r.Doc)
		if err != nil {
			quarantine = append(quarantine, quarantineItem{alert: a, attempts: 1, reason: "write back: " + err.Error()})
			continue
		}
		if bytes.Equal(src, a.Raw) {
			st.noop++
			p.m.AlertsProcessed.WithLabelValues(path, "noop").Inc()
			continue
		}
		outcome := statusOf(r.Doc[root])
		if r.Outcome == enrich.OutcomePartial {
			outcome = "partial"
		}
		p.countProblems(r.Doc[root])
		items = append(items, WriteItem{Alert: a, Source: src})
		outcomes = append(outcomes, outcome)
	}
	return items, outcomes, quarantine
}

// write sends items, retrying the whole request with backoff while the store is
// unavailable, at most MaxRetries times; then the alerts stay pending for the next pass.
func (p *processor) write(ctx context.Context, items []WriteItem) ([]WriteResult, error) {
	if len(items) == 0 {
		return nil, nil
	}
	for n := 0; ; n++ {
		res, err := p.store.Write(ctx, items)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrUnavailable) || n >= p.o.MaxRetries || ctx.Err() != nil {
			return nil, err
		}
		d := p.o.backoff(n)
		p.log.Warn("write failed; retrying", "alerts", len(items), "err", err, "in", d.String())
		if p.sleep(ctx, d) != nil {
			return nil, ctx.Err()
		}
	}
}

type quarantineItem struct {
	alert    *enrich.Alert
	reason   string
	attempts int
}

// fail counts a failed attempt; when the budget is spent it returns the alert to
// quarantine.
func (p *processor) fail(g *generation, path string, a *enrich.Alert, reason string, st *batchStats) (quarantineItem, bool) {
	n := p.attempts.fail(a.Key(), g.gen.Number, reason)
	if n < p.o.MaxAttempts {
		st.failed++
		p.m.AlertsProcessed.WithLabelValues(path, "failed").Inc()
		p.log.Warn("alert failed; it will be tried again", "index", a.Index, "alert_id", a.ID, "attempt", n,
			"of", p.o.MaxAttempts, "reason", reason)
		return quarantineItem{}, false
	}
	return quarantineItem{alert: a, reason: reason, attempts: n}, true
}

// quarantine marks alerts on themselves: <root>.status quarantined and <root>.quarantine,
// keeping what an older generation wrote there. An alert whose marker cannot be written
// is left alone by this process until the generation changes.
func (p *processor) quarantine(ctx context.Context, g *generation, path string, qs []quarantineItem, st *batchStats) {
	root := g.p.StatusNamespace()
	items := make([]WriteItem, 0, len(qs))
	reasons := make([]string, 0, len(qs))
	for _, q := range qs {
		doc, err := quarantineDoc(q.alert, root, g.gen, q.reason, q.attempts, p.now())
		var src []byte
		if err == nil {
			src, err = enrich.Splice(q.alert.Raw, map[string][]byte{root: doc})
		}
		if err != nil {
			p.attempts.quarantineLocally(q.alert.Key(), g.gen.Number)
			st.quarantined++
			p.log.Warn("alert quarantined in this process only; its marker cannot be written", "index", q.alert.Index,
				"alert_id", q.alert.ID, "reason", q.reason, "err", err)
			continue
		}
		items = append(items, WriteItem{Alert: q.alert, Source: src})
		reasons = append(reasons, q.reason)
	}
	if len(items) == 0 {
		return
	}
	res, err := p.write(ctx, items)
	settled := p.settledMeanwhile(ctx, g, root, items, res, err)
	for i, it := range items {
		a := it.Alert
		if settled[a.Key()] {
			st.skipped++ // quarantined (or done) by another process since it was read
			continue
		}
		st.quarantined++
		p.m.AlertsProcessed.WithLabelValues(path, "quarantined").Inc()
		p.m.QuarantinedNow.Inc()
		if err == nil && res[i].Status == ItemWritten {
			p.written.add(a.Key(), res[i].SeqNo, res[i].PrimaryTerm)
			p.attempts.clear(a.Key())
			p.log.Warn("alert quarantined", "index", a.Index, "alert_id", a.ID, "generation", g.gen.Number, "reason", reasons[i])
			continue
		}
		p.attempts.quarantineLocally(a.Key(), g.gen.Number)
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = res[i].Status.String() + " " + res[i].Reason
		}
		p.log.Warn("alert quarantined in this process only; its marker was not written", "index", a.Index,
			"alert_id", a.ID, "reason", reasons[i], "write", why)
	}
}

// settledMeanwhile re-reads the alerts whose quarantine write conflicted and returns
// those that need nothing any more from this generation (quarantined or done by another
// process, or by a run whose writes the search did not show yet).
func (p *processor) settledMeanwhile(ctx context.Context, g *generation, root string, items []WriteItem, res []WriteResult, err error) map[string]bool {
	if err != nil {
		return nil
	}
	var conflicted []*enrich.Alert
	for i, it := range items {
		if res[i].Status == ItemConflict {
			conflicted = append(conflicted, it.Alert)
		}
	}
	if len(conflicted) == 0 {
		return nil
	}
	fresh, err := p.store.Reread(ctx, conflicted)
	if err != nil {
		return nil
	}
	settled := map[string]bool{}
	for _, a := range fresh {
		src, err := enrich.DecodeMembers(a.Raw, []string{root})
		if err != nil {
			continue
		}
		if c := g.gen.Classify(enrich.ReadState(src, root)); c != enrich.NeedsEnrichment && c != enrich.NeedsStages {
			settled[a.Key()] = true
		}
	}
	return settled
}

// quarantineDoc is the root object of a quarantined alert: the old root's members,
// status quarantined, and the quarantine marker.
func quarantineDoc(a *enrich.Alert, root string, g enrich.Generation, reason string, attempts int, now time.Time) ([]byte, error) {
	prev := map[string]any{}
	if m, ok := a.Source[root].(map[string]any); ok {
		for k, v := range m {
			prev[k] = v
		}
	}
	if len(reason) > 1024 {
		reason = reason[:1024] + "…"
	}
	prev[enrich.FieldStatus] = enrich.StatusQuarantined
	prev[enrich.FieldQuarantine] = map[string]any{
		"generation": g.Number,
		"hash":       g.Hash,
		"reason":     reason,
		"attempts":   attempts,
		"at":         now.UTC().Format(time.RFC3339Nano),
	}
	return json.Marshal(prev)
}

// spliceDoc encodes each namespace of doc and splices it into raw.
func spliceDoc(raw []byte, doc map[string]any) ([]byte, error) {
	set := make(map[string][]byte, len(doc))
	for k, v := range doc {
		if a, ok := v.(enrich.JSONAppender); ok {
			set[k] = a.AppendJSON(nil)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", k, err)
		}
		set[k] = b
	}
	return enrich.Splice(raw, set)
}

func statusOf(v any) string {
	if d, ok := v.(*enrich.RootDoc); ok {
		return d.Status()
	}
	return "enriched"
}

func (p *processor) countProblems(v any) {
	if d, ok := v.(*enrich.RootDoc); ok {
		for _, pr := range d.Problems {
			n := 1.0
			if pr.Reason == enrich.ReasonTruncated { // "N more": N values skipped, not listed
				if k, err := strconv.Atoi(strings.TrimSuffix(pr.Value, " more")); err == nil {
					n = float64(k)
				}
			}
			p.m.ValuesSkipped.WithLabelValues(pr.Reason).Add(n)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([]string(nil), a...)
	y := append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// backoff returns the delay before retry n (0-based): exponential with full jitter.
func (o Options) backoff(n int) time.Duration {
	d := o.BackoffInitial << min(n, 16)
	if d > o.BackoffMax || d <= 0 {
		d = o.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}
