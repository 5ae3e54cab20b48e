package enrich

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

type countingObserver struct {
	mu       sync.Mutex
	calls    map[string]int
	rejected map[string]int
}

func (o *countingObserver) StageCall(stage, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[stage+"/"+result]++
}

func (o *countingObserver) PatchRejected(stage string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rejected[stage]++
}

func stage(name, ns string, f func(a *Alert) (Patch, error)) *StageFunc {
	return &StageFunc{StageName: name, StageNS: ns, Func: func(_ context.Context, alerts []*Alert) ([]Patch, error) {
		out := make([]Patch, len(alerts))
		for i, a := range alerts {
			p, err := f(a)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}}
}

func TestPipeline(t *testing.T) {
	status := stage("attack", "attack_mappings", func(a *Alert) (Patch, error) {
		return Patch{"attack_mappings": map[string]any{"status": "enriched"}}, nil
	})
	okPlugin := stage("asset", "asset", func(a *Alert) (Patch, error) { return Patch{"asset": map[string]any{"owner": a.ID}}, nil })
	down := stage("asset", "asset", func(*Alert) (Patch, error) { return nil, fmt.Errorf("dial: %w", ErrStageUnavailable) })
	forbidden := stage("asset", "asset", func(a *Alert) (Patch, error) {
		if a.ID == "b" {
			return Patch{"kibana.alert.workflow_status": "closed"}, nil
		}
		return Patch{"asset.owner": "x"}, nil
	})
	for _, tc := range []struct {
		name     string
		plugin   *StageFunc
		required bool
		outcomes []Outcome
		pending  [][]string
		rejected int
	}{
		{"healthy", okPlugin, false, []Outcome{OutcomeOK, OutcomeOK}, [][]string{{}, {}}, 0},
		{"optional down", down, false, []Outcome{OutcomePartial, OutcomePartial}, [][]string{{"asset"}, {"asset"}}, 0},
		{"required down", down, true, []Outcome{OutcomeDeferred, OutcomeDeferred}, nil, 0},
		{"forbidden patch", forbidden, false, []Outcome{OutcomeOK, OutcomePartial}, [][]string{{}, {"asset"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &countingObserver{calls: map[string]int{}, rejected: map[string]int{}}
			p, err := NewPipeline([]PipelineStage{{Stage: status, Required: true}, {Stage: tc.plugin, Required: tc.required}}, "attack_mappings", obs, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := p.Run(context.Background(), []*Alert{{ID: "a", Source: map[string]any{}}, {ID: "b", Source: map[string]any{}}})
			if len(res) != 2 {
				t.Fatalf("%d results for 2 alerts", len(res))
			}
			for i, r := range res {
				if r.Outcome != tc.outcomes[i] {
					t.Errorf("alert %d: outcome %s, want %s", i, r.Outcome, tc.outcomes[i])
				}
				if r.Outcome == OutcomeDeferred {
					if r.Doc != nil {
						t.Errorf("alert %d: deferred alert has a document to write: %v", i, r.Doc)
					}
					continue
				}
				got := r.Doc["attack_mappings"].(map[string]any)[PendingField].([]string)
				if fmt.Sprint(got) != fmt.Sprint(tc.pending[i]) {
					t.Errorf("alert %d: pending %v, want %v", i, got, tc.pending[i])
				}
				if _, ok := r.Doc["kibana.alert.workflow_status"]; ok {
					t.Errorf("alert %d: a field outside the namespace was kept", i)
				}
			}
			if obs.rejected["asset"] != tc.rejected {
				t.Errorf("rejected %d, want %d", obs.rejected["asset"], tc.rejected)
			}
		})
	}
}

func TestNewPipelineRejects(t *testing.T) {
	a := stage("attack", "attack_mappings", nil)
	for _, tc := range []struct {
		name   string
		stages []PipelineStage
		want   string
	}{
		{"empty", nil, "pipeline has no stages"},
		{"same name", []PipelineStage{{Stage: a}, {Stage: stage("attack", "x", nil)}}, `stage "attack": name used twice`},
		{"overlapping namespace", []PipelineStage{{Stage: a}, {Stage: stage("sub", "attack_mappings.extra", nil)}},
			`stage "sub": namespace "attack_mappings.extra" overlaps "attack_mappings" of stage "attack"`},
		{"empty namespace", []PipelineStage{{Stage: stage("x", "", nil)}}, `stage "x": empty namespace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPipeline(tc.stages, "attack_mappings", nil, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestPipelineWrongPatchCount(t *testing.T) {
	bad := &StageFunc{StageName: "bad", StageNS: "bad", Func: func(context.Context, []*Alert) ([]Patch, error) {
		return []Patch{nil}, nil
	}}
	p, _ := NewPipeline([]PipelineStage{{Stage: bad, Required: true}}, "bad", nil, nil)
	res := p.Run(context.Background(), []*Alert{{ID: "a"}, {ID: "b"}})
	for _, r := range res {
		if r.Outcome != OutcomeDeferred || r.Err == nil {
			t.Fatalf("a stage answering 1 patch for 2 alerts must fail the batch: %+v", r)
		}
	}
}

// TestAttackStageConcurrent runs the ATT&CK stage from many goroutines (race detector).
func TestAttackStageConcurrent(t *testing.T) {
	st := NewAttackStage(builtin(t), AttackOptions{InheritParent: true})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				src := map[string]any{"rule": map[string]any{"mitre": map[string]any{"id": []any{"T1021.002", fmt.Sprintf("T%04d", 1000+(g*i)%50)}}}}
				if _, err := st.Enrich(context.Background(), []*Alert{{Source: src}}); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
}
