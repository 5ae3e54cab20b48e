package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

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
	// OutcomeDeferred: a required stage failed; nothing may be written (Doc is nil).
	OutcomeDeferred Outcome = "deferred"
)

// Result is the pipeline's verdict for one alert.
type Result struct {
	Alert   *Alert
	Doc     map[string]any // partial document to write; nil when deferred
	Outcome Outcome
	Pending []string // optional stages that failed
	Err     error    // first stage error, for logs
}

// PendingField is the key, inside the status namespace, listing stages still to run.
const PendingField = "pending_stages"

// Pipeline runs stages in order over batches of alerts.
type Pipeline struct {
	stages   []PipelineStage
	statusNS string
	obs      Observer
	log      *slog.Logger
}

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
	return &Pipeline{stages: stages, statusNS: statusNS, obs: obs, log: log}, nil
}

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

// Run runs every stage over the batch and returns one result per alert, in order.
// It never returns fewer results than alerts: a failing stage only changes outcomes.
func (p *Pipeline) Run(ctx context.Context, alerts []*Alert) []Result {
	res := make([]Result, len(alerts))
	for i, a := range alerts {
		res[i] = Result{Alert: a, Doc: map[string]any{}, Outcome: OutcomeOK}
	}
	for _, ps := range p.stages {
		st := ps.Stage
		// Skip alerts a required stage already deferred.
		idx := make([]int, 0, len(alerts))
		batch := make([]*Alert, 0, len(alerts))
		for i := range res {
			if res[i].Outcome != OutcomeDeferred {
				idx = append(idx, i)
				batch = append(batch, alerts[i])
			}
		}
		if len(batch) == 0 {
			break
		}
		start := time.Now()
		patches, err := st.Enrich(ctx, batch)
		if err == nil && len(patches) != len(batch) {
			err = fmt.Errorf("stage %s returned %d patches for %d alerts", st.Name(), len(patches), len(batch))
		}
		result := "ok"
		if err != nil {
			result = "error"
			if errors.Is(err, ErrStageUnavailable) {
				result = "unavailable"
			}
		}
		p.obs.StageCall(st.Name(), result, time.Since(start))
		if err != nil {
			p.log.Warn("stage failed", "stage", st.Name(), "required", ps.Required, "alerts", len(batch), "err", err)
			for _, i := range idx {
				p.fail(&res[i], st.Name(), ps.Required, err)
			}
			continue
		}
		ns := st.Namespace()
		for j, i := range idx {
			patch := patches[j]
			if bad := outside(patch, ns); bad != "" {
				p.obs.PatchRejected(st.Name())
				ferr := fmt.Errorf("stage %s wrote %q: %w %q", st.Name(), bad, ErrForbiddenPatch, ns)
				p.log.Warn("patch rejected", "stage", st.Name(), "field", bad, "namespace", ns, "alert_id", alerts[i].ID)
				p.fail(&res[i], st.Name(), ps.Required, ferr)
				continue
			}
			for k, v := range patch {
				res[i].Doc[k] = v
			}
		}
	}
	for i := range res {
		r := &res[i]
		if r.Outcome == OutcomeDeferred {
			r.Doc = nil
			continue
		}
		switch status := r.Doc[p.statusNS].(type) {
		case PendingMarker:
			status.SetPending(r.Pending)
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

func (p *Pipeline) fail(r *Result, stage string, required bool, err error) {
	if r.Err == nil {
		r.Err = err
	}
	if required {
		r.Outcome = OutcomeDeferred
		return
	}
	r.Outcome = OutcomePartial
	r.Pending = append(r.Pending, stage)
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
