package enrich

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ErrBatchFailed is wrapped, beside ErrStageUnavailable, by a stage that went down while
// working on a batch (a plugin that crashed or hung on it): unlike a stage that was down
// before the call, the batch may hold the alert that brought it down, so the pipeline
// isolates it.
var ErrBatchFailed = errors.New("stage failed on this batch")

// ErrForbiddenPatch is reported when a stage's patch touches a field outside its namespace.
var ErrForbiddenPatch = errors.New("patch outside the stage's namespace")

// PipelineStage is one stage of a pipeline and whether alerts may be written without it.
type PipelineStage struct {
	Stage Stage
	// Required stages must succeed before anything is written for an alert; an optional
	// stage that fails leaves the alert marked in <status>.pending_stages, to be retried.
	Required bool
}

// Observer is told how each stage call went. Implemented by the metrics package.
type Observer interface {
	// StageCall reports one call: result is "ok", "error" or "unavailable".
	StageCall(stage, result string, d time.Duration)
	// PatchRejected reports a patch dropped because it wrote outside the stage's namespace.
	PatchRejected(stage string)
}

type nopObserver struct{}

func (nopObserver) StageCall(string, string, time.Duration) {}
func (nopObserver) PatchRejected(string)                    {}

// Outcome of running the pipeline on one alert.
type Outcome string

// Pipeline outcomes.
const (
	// OutcomeOK: every stage succeeded; Doc holds all patches.
	OutcomeOK Outcome = "ok"
	// OutcomePartial: an optional stage failed; Doc holds the rest and names the stage in
	// pending_stages so a later run retries it.
	OutcomePartial Outcome = "partial"
	// OutcomeDeferred: a required stage could not run (it is down); nothing may be
	// written (Doc is nil) and the alert is not to blame.
	OutcomeDeferred Outcome = "deferred"
	// OutcomeFailed: a required stage failed on this alert in particular (AlertErr);
	// nothing may be written.
	OutcomeFailed Outcome = "failed"
)

// Result is the pipeline's verdict for one alert.
type Result struct {
	Alert   *Alert
	Doc     map[string]any // partial document to write; nil when deferred or failed
	Outcome Outcome
	Pending []string // optional stages that failed
	Err     error    // first stage error, for logs
	// AlertErr is set when a stage failed on this alert in particular (a plugin that
	// crashes on it, a patch outside the namespace): it counts against the alert's
	// attempt budget. A stage that fails for a whole batch blames no alert.
	AlertErr error
}

// StatusDoc is implemented by the value the first stage writes under the status
// namespace: the pipeline records in it the optional stages still to run and the
// generation that wrote it.
type StatusDoc interface {
	SetPending(stages []string)
	SetGeneration(g Generation)
}

// Fingerprinter is implemented by stages whose output depends on their configuration:
// the fingerprint changes whenever what the stage writes for the same alert may change.
type Fingerprinter interface {
	Fingerprint() string
}

// Pipeline runs stages in order over batches of alerts.
type Pipeline struct {
	stages   []PipelineStage
	statusNS string
	obs      Observer
	log      *slog.Logger
	gen      Generation
	// lastOK holds, per stage, when a call last succeeded (unix nanoseconds).
	lastOK map[string]*atomic.Int64
}

// blameWindow is how recently a stage must have worked for a lone alert it fails on to
// be blamed: a stage that worked for other alerts a moment ago and fails on this one
// fails because of it.
const blameWindow = 10 * time.Minute

// NewPipeline checks the stages (unique names and namespaces, none empty) and returns a
// pipeline. statusNS is the namespace (of the first stage) that carries pending_stages.
func NewPipeline(stages []PipelineStage, statusNS string, obs Observer, log *slog.Logger) (*Pipeline, error) {
	if len(stages) == 0 {
		return nil, errors.New("pipeline has no stages")
	}
	names, spaces := map[string]bool{}, map[string]string{}
	for i, s := range stages {
		n, ns := s.Stage.Name(), s.Stage.Namespace()
		switch {
		case n == "":
			return nil, fmt.Errorf("stage %d: empty name", i)
		case ns == "":
			return nil, fmt.Errorf("stage %q: empty namespace", n)
		case names[n]:
			return nil, fmt.Errorf("stage %q: name used twice", n)
		}
		for other, by := range spaces {
			if HasPrefixField(ns, other) || HasPrefixField(other, ns) {
				return nil, fmt.Errorf("stage %q: namespace %q overlaps %q of stage %q", n, ns, other, by)
			}
		}
		names[n], spaces[ns] = true, n
	}
	if obs == nil {
		obs = nopObserver{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{stages: stages, statusNS: statusNS, obs: obs, log: log, lastOK: map[string]*atomic.Int64{}}
	for _, s := range stages {
		p.lastOK[s.Stage.Name()] = new(atomic.Int64)
	}
	p.gen = Generation{Hash: p.fingerprint()}
	if v, ok := stages[0].Stage.(interface{ RulesVersion() string }); ok {
		p.gen.RulesVersion = v.RulesVersion()
	}
	return p, nil
}

// fingerprint hashes everything that shapes what the pipeline writes: the format
// version, the status namespace, and each stage's name, namespace and fingerprint.
func (p *Pipeline) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "format %d\nstatus %s\n", FormatVersion, p.statusNS)
	for _, s := range p.stages {
		fmt.Fprintf(h, "stage %s %s", s.Stage.Name(), s.Stage.Namespace())
		if f, ok := s.Stage.(Fingerprinter); ok {
			fmt.Fprintf(h, " %s", f.Fingerprint())
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Generation returns the generation the pipeline writes: its fingerprint, and the
// number given with WithGeneration (0 until then).
func (p *Pipeline) Generation() Generation { return p.gen }

// WithGeneration returns a copy of the pipeline that stamps generation number n on what
// it writes.
func (p *Pipeline) WithGeneration(n int64) *Pipeline {
	q := *p
	q.gen.Number = n
	return &q
}

// StatusNamespace is the namespace that carries the status, pending stages and
// generation.
func (p *Pipeline) StatusNamespace() string { return p.statusNS }

// Stages returns the pipeline's stages in order.
func (p *Pipeline) Stages() []PipelineStage { return p.stages }

// Fields returns the union of the _source fields the stages read.
func (p *Pipeline) Fields() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range p.stages {
		for _, f := range s.Stage.Fields() {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// maxIsolateCalls bounds the extra calls one stage failure may cost while the pipeline
// looks for the alerts that cause it; maxBlindFailures is how many failed calls in a row,
// with no success among them, make it conclude that the stage fails for every alert.
const (
	maxIsolateCalls  = 64
	maxBlindFailures = 6
)

// Run runs every stage over the batch and returns one result per alert, in order.
// It never returns fewer results than alerts: a failing stage only changes outcomes.
//
// When a stage fails for a batch in a way that may come from one alert (an error, a
// crash, a timeout; not ErrStageUnavailable alone), the batch is split in halves until
// the alerts that make it fail are isolated: those get AlertErr, the others their
// patches. When every part fails, the stage is failing for all alerts and none is blamed.
func (p *Pipeline) Run(ctx context.Context, alerts []*Alert) []Result {
	res := make([]Result, len(alerts))
	for i, a := range alerts {
		res[i] = Result{Alert: a, Doc: map[string]any{}, Outcome: OutcomeOK}
	}
	for _, ps := range p.stages {
		st := ps.Stage
		idx := make([]int, 0, len(alerts))
		batch := make([]*Alert, 0, len(alerts))
		for i := range res {
			if res[i].Outcome != OutcomeDeferred && res[i].Outcome != OutcomeFailed {
				idx = append(idx, i)
				batch = append(batch, alerts[i])
			}
		}
		if len(batch) == 0 {
			break
		}
		patches, alertErrs, stageErr := p.runStage(ctx, st, batch)
		if stageErr != nil {
			p.log.Warn("stage failed", "stage", st.Name(), "required", ps.Required, "alerts", len(batch), "err", stageErr)
		}
		ns := st.Namespace()
		for j, i := range idx {
			switch {
			case alertErrs[j] != nil:
				p.fail(&res[i], st.Name(), ps.Required, alertErrs[j], true)
				continue
			case stageErr != nil:
				p.fail(&res[i], st.Name(), ps.Required, stageErr, false)
				continue
			}
			patch := patches[j]
			if bad := outside(patch, ns); bad != "" {
				p.obs.PatchRejected(st.Name())
				ferr := fmt.Errorf("stage %s wrote %q: %w %q", st.Name(), bad, ErrForbiddenPatch, ns)
				p.log.Warn("patch rejected", "stage", st.Name(), "field", bad, "namespace", ns, "alert_id", alerts[i].ID)
				// The stage breaks its contract: its fault, not the alert's.
				p.fail(&res[i], st.Name(), ps.Required, ferr, false)
				continue
			}
			for k, v := range patch {
				res[i].Doc[k] = v
			}
		}
	}
	for i := range res {
		r := &res[i]
		if r.Outcome == OutcomeDeferred || r.Outcome == OutcomeFailed {
			r.Doc = nil
			continue
		}
		switch status := r.Doc[p.statusNS].(type) {
		case StatusDoc:
			status.SetPending(r.Pending)
			status.SetGeneration(p.gen)
		case map[string]any:
			pending := r.Pending
			if pending == nil {
				pending = []string{}
			}
			status[PendingField] = pending
		}
	}
	return res
}

// runStage calls a stage and, when the call fails in a way an alert may cause, isolates
// the alerts it fails on. It returns the patches (valid where neither alertErrs[j] nor
// stageErr is set), per-alert errors, and an error for every alert not isolated.
func (p *Pipeline) runStage(ctx context.Context, st Stage, batch []*Alert) ([]Patch, []error, error) {
	patches := make([]Patch, len(batch))
	alertErrs := make([]error, len(batch))
	is := isolation{p: p, st: st, calls: 0}
	err := is.call(ctx, batch, patches, alertErrs, true)
	return patches, alertErrs, err
}

type isolation struct {
	p         *Pipeline
	st        Stage
	calls     int
	blind     int // failed calls since the last success
	succeeded bool
}

// call runs the stage on batch, writing into patches and alertErrs (aligned with batch).
// It returns an error that applies to every alert of batch it could not resolve.
func (is *isolation) call(ctx context.Context, batch []*Alert, patches []Patch, alertErrs []error, top bool) error {
	is.calls++
	start := time.Now()
	out, err := is.st.Enrich(ctx, batch)
	var perAlert AlertErrors
	if err == nil && len(out) != len(batch) {
		err = fmt.Errorf("stage %s returned %d patches for %d alerts: %w", is.st.Name(), len(out), len(batch), errPatchCount)
	}
	if errors.As(err, &perAlert) && len(out) == len(batch) {
		for j, e := range perAlert {
			if j >= 0 && j < len(batch) {
				alertErrs[j] = e
			}
		}
		err = nil
	}
	result := "ok"
	if err != nil {
		result = "error"
		if errors.Is(err, ErrStageUnavailable) {
			result = "unavailable"
		}
	}
	is.p.obs.StageCall(is.st.Name(), result, time.Since(start))
	if err == nil {
		copy(patches, out)
		is.succeeded, is.blind = true, 0
		is.p.lastOK[is.st.Name()].Store(time.Now().UnixNano())
		return nil
	}
	is.blind++
	if !mayIsolate(err) || ctx.Err() != nil {
		return err
	}
	if len(batch) == 1 {
		// A lone alert on its own: the alert may be to blame, or the stage may be failing
		// for everything; blame it only when the stage worked for others lately, and when
		// it fails again alone (a hang or a crash that came from the stage's state, not
		// the alert, passes on a second try).
		if top && time.Since(time.Unix(0, is.p.lastOK[is.st.Name()].Load())) > blameWindow {
			return err
		}
		if is.calls < maxIsolateCalls {
			is.calls++
			out, err2 := is.st.Enrich(ctx, batch)
			if err2 == nil && len(out) == 1 {
				is.p.obs.StageCall(is.st.Name(), "ok", 0)
				patches[0] = out[0]
				return nil
			}
		}
		alertErrs[0] = err
		return nil
	}
	if is.calls >= maxIsolateCalls || (is.blind >= maxBlindFailures && !is.succeeded) {
		return err
	}
	half := len(batch) / 2
	errL := is.call(ctx, batch[:half], patches[:half], alertErrs[:half], false)
	errR := is.call(ctx, batch[half:], patches[half:], alertErrs[half:], false)
	if !is.succeeded {
		// Nothing worked: the stage fails for every alert; blame none.
		for j := range alertErrs {
			alertErrs[j] = nil
		}
		return err
	}
	switch {
	case errL != nil && errR != nil:
		return err
	case errL != nil:
		for j := range batch[:half] {
			if alertErrs[j] == nil {
				alertErrs[j] = errL
			}
		}
	case errR != nil:
		for j := range batch[half:] {
			if alertErrs[half+j] == nil {
				alertErrs[half+j] = errR
			}
		}
	}
	return nil
}

// mayIsolate reports whether a stage error may come from an alert of the batch: any error
// but ErrStageUnavailable alone (the stage could not run at all).
func mayIsolate(err error) bool {
	if errors.Is(err, errPatchCount) {
		return false // the stage breaks its contract: no alert is to blame
	}
	return !errors.Is(err, ErrStageUnavailable) || errors.Is(err, ErrBatchFailed)
}

var errPatchCount = errors.New("wrong number of patches")

func (p *Pipeline) fail(r *Result, stage string, required bool, err error, alertsFault bool) {
	if r.Err == nil {
		r.Err = err
	}
	if alertsFault && r.AlertErr == nil {
		r.AlertErr = fmt.Errorf("stage %s: %w", stage, err)
	}
	switch {
	case required && alertsFault:
		r.Outcome = OutcomeFailed
	case required:
		r.Outcome = OutcomeDeferred
	default:
		r.Outcome = OutcomePartial
		r.Pending = append(r.Pending, stage)
	}
}

// outside returns the first key of patch that is not ns (or under it), or "".
func outside(patch Patch, ns string) string {
	for k := range patch {
		if !HasPrefixField(k, ns) {
			return k
		}
	}
	return ""
}

// AlertErrors is returned by a stage that failed on some alerts of a batch and not on
// others: the keys are positions in the batch, and the patches of the other alerts are
// used. The pipeline blames exactly those alerts.
type AlertErrors map[int]error

func (e AlertErrors) Error() string {
	parts := make([]string, 0, len(e))
	for i, err := range e {
		parts = append(parts, strconv.Itoa(i)+": "+err.Error())
	}
	return fmt.Sprintf("%d alerts failed: %s", len(e), strings.Join(parts, "; "))
}
