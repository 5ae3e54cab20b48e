package enrich

import (
	"context"
	"errors"
	"time"
)

// ErrStageUnavailable is returned (wrapped) by a stage that cannot run now, e.g. a plugin
// whose process is down. The pipeline treats it like any stage failure.
var ErrStageUnavailable = errors.New("stage unavailable")

// Stage enriches batches of alerts.
type Stage interface {
	// Name identifies the stage in config, logs, metrics and <root>.pending_stages.
	Name() string
	// Namespace is the one top-level field the stage may write. Patches that touch any
	// other field are rejected.
	Namespace() string
	// Fields lists the _source fields the stage reads; sources fetch only these.
	Fields() []string
	// Enrich returns one patch per alert, in order (nil for nothing to add). It must not
	// modify the alerts. An error fails the whole batch for this stage; it must be safe
	// to call Enrich again with the same alerts (idempotent).
	Enrich(ctx context.Context, alerts []*Alert) ([]Patch, error)
}

// StageFunc adapts a function to the Stage interface; handy in tests.
type StageFunc struct {
	StageName   string
	StageNS     string
	StageFields []string
	Func        func(ctx context.Context, alerts []*Alert) ([]Patch, error)
}

var _ Stage = (*StageFunc)(nil)

// Name implements Stage.
func (s *StageFunc) Name() string { return s.StageName }

// Namespace implements Stage.
func (s *StageFunc) Namespace() string { return s.StageNS }

// Fields implements Stage.
func (s *StageFunc) Fields() []string { return s.StageFields }

// Enrich implements Stage.
func (s *StageFunc) Enrich(ctx context.Context, alerts []*Alert) ([]Patch, error) {
	return s.Func(ctx, alerts)
}

// Sleep waits for d, or until ctx ends and then returns ctx.Err(): the backoff wait of
// retry loops that must stop at shutdown.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
