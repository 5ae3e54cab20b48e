package runner

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

func TestDivide(t *testing.T) {
	m := func(name string, gen int64) Member { return Member{Instance: name, Generation: gen} }
	cases := []struct {
		members []Member
		self    Member
		want    share
	}{
		{[]Member{m("b", 1)}, m("b", 1), share{known: true, active: true, slice: Slice{0, 1}, members: 1}},
		{[]Member{m("b", 1), m("a", 1), m("c", 1)}, m("b", 1), share{known: true, active: true, slice: Slice{1, 3}, members: 3}},
		{[]Member{m("c", 1), m("a", 2), m("b", 2)}, m("b", 2), share{known: true, active: true, slice: Slice{1, 2}, members: 2}},
		{[]Member{m("c", 1), m("a", 2)}, m("c", 1), share{known: true, members: 1,
			reason: "replica a runs a newer generation (2, ours 1); this one waits until it loads the same rules"}},
		{[]Member{m("c", 0), m("a", 2)}, m("c", 0), share{known: true, members: 1, reason: "generation not registered yet"}},
		// One name held by two processes counts once: no slice is left to nobody.
		{[]Member{m("a", 1), m("b", 1), m("a", 1)}, m("b", 1), share{known: true, active: true, slice: Slice{1, 2}, members: 2}},
	}
	for i, c := range cases {
		if got := divide(c.members, c.self); got != c.want {
			t.Errorf("case %d: got %+v, want %+v", i, got, c.want)
		}
	}
}

// replicas runs n runners over one store and roster, each named <prefix><i>.
type replicas struct {
	t       *testing.T
	st      *fakeStore
	state   *fakeState
	runners []*Runner
	ms      []*metrics.Metrics
	cancel  []context.CancelFunc
	wg      sync.WaitGroup
}

func startReplicas(t *testing.T, prefix string, st *fakeStore, state *fakeState, ps []*enrich.Pipeline) *replicas {
	rs := &replicas{t: t, st: st, state: state}
	for i, p := range ps {
		o := testOptions()
		o.Instance = fmt.Sprintf("%s%d", prefix, i)
		o.Lease = 300 * time.Millisecond
		r, m := newRunner(t, st, state, p, o)
		ctx, cancel := context.WithCancel(context.Background())
		rs.runners, rs.ms, rs.cancel = append(rs.runners, r), append(rs.ms, m), append(rs.cancel, cancel)
		rs.wg.Add(1)
		go func() { defer rs.wg.Done(); _ = r.Run(ctx) }()
	}
	t.Cleanup(rs.stop)
	return rs
}

func (rs *replicas) stop() {
	for _, c := range rs.cancel {
		c()
	}
	rs.wg.Wait()
}

// waitFor polls cond until it holds, failing after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allEnriched says whether every alert of st is written by generation gen.
func allEnriched(st *fakeStore, gen int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, d := range st.docs {
		src, _ := enrich.DecodeMembers(d.raw, []string{root})
		if enrich.ReadState(src, root).Generation != gen {
			return false
		}
	}
	return true
}

func enrichedBy(m *metrics.Metrics) float64 {
	return testutil.ToFloat64(m.AlertsProcessed.WithLabelValues(metrics.PathLive, "enriched")) +
		testutil.ToFloat64(m.AlertsProcessed.WithLabelValues(metrics.PathBackfill, "enriched"))
}

func TestReplicasShareTheWork(t *testing.T) {
	st := newFakeStore()
	state := newFakeState(st)
	p := pipeline(t, true)
	// The history is there from the start; new alerts come once all three run.
	st.add("alerts-1", "old", time.Now().Add(-48*time.Hour), alertSrc("T1021.002"))
	st.add("alerts-1", "untimed", time.Time{}, alertSrc("T1021.002"))
	rs := startReplicas(t, "r", st, state, []*enrich.Pipeline{p, p, p})
	waitFor(t, "three replicas", func() bool {
		for _, m := range rs.ms {
			if testutil.ToFloat64(m.Replicas) != 3 || testutil.ToFloat64(m.ShareActive) != 1 {
				return false
			}
		}
		return true
	})
	loadAlerts(st, "alerts-1", 300, time.Now())
	go func() {
		for i := 0; i < 500 && !allEnriched(st, 1); i++ {
			st.refresh()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	waitFor(t, "every alert enriched", func() bool { return allEnriched(st, 1) })
	if k, n := st.maxWrites(); n != 1 {
		t.Errorf("%s written %d times, want once", k, n)
	}
	var sum float64
	for i, m := range rs.ms {
		w := enrichedBy(m)
		sum += w
		if w < 50 {
			t.Errorf("replica %d wrote %v of 302 alerts; the work is not shared", i, w)
		}
	}
	if sum != 302 {
		t.Errorf("replicas wrote %v alerts together, want 302", sum)
	}
}

// TestReplicaTakeover: a replica dies without leaving; the others take its slice over, and
// when it comes back it gets a slice again.
func TestReplicaTakeover(t *testing.T) {
	st := newFakeStore()
	state := newFakeState(st)
	p := pipeline(t, true)
	// The history is there from the start; new alerts come once all three run.
	st.add("alerts-1", "old", time.Now().Add(-48*time.Hour), alertSrc("T1021.002"))
	st.add("alerts-1", "untimed", time.Time{}, alertSrc("T1021.002"))
	rs := startReplicas(t, "r", st, state, []*enrich.Pipeline{p, p, p})
	waitFor(t, "three replicas", func() bool { return testutil.ToFloat64(rs.ms[0].Replicas) == 3 })
	// r2 dies without leaving: its lease expires and the others take its slice.
	state.kill("r2")
	rs.cancel[2]()
	killed := time.Now()
	loadAlerts(st, "alerts-1", 200, time.Now())
	st.refresh()
	waitFor(t, "every alert enriched by the survivors", func() bool { st.refresh(); return allEnriched(st, 1) })
	took := time.Since(killed)
	if bound := 300*time.Millisecond + 100*time.Millisecond + 20*time.Millisecond; took > 5*bound {
		t.Errorf("takeover took %s, far above the bound %s", took, bound)
	}
	if testutil.ToFloat64(rs.ms[0].Replicas) != 2 || testutil.ToFloat64(rs.ms[1].Replicas) != 2 {
		t.Errorf("survivors see %v and %v replicas, want 2", testutil.ToFloat64(rs.ms[0].Replicas), testutil.ToFloat64(rs.ms[1].Replicas))
	}
	if k, n := st.maxWrites(); n != 1 {
		t.Errorf("%s written %d times, want once", k, n)
	}

	// r2 comes back (a new process under the same name) and gets its slice again.
	state.mu.Lock()
	delete(state.dead, "r2")
	state.mu.Unlock()
	o := testOptions()
	o.Instance, o.Lease = "r2", 300*time.Millisecond
	r2, m2 := newRunner(t, st, state, p, o)
	ctx, cancel := context.WithCancel(context.Background())
	rs.cancel = append(rs.cancel, cancel)
	rs.wg.Add(1)
	go func() { defer rs.wg.Done(); _ = r2.Run(ctx) }()
	waitFor(t, "r2 to rejoin", func() bool {
		return testutil.ToFloat64(m2.ShareActive) == 1 && testutil.ToFloat64(rs.ms[0].Replicas) == 3 &&
			testutil.ToFloat64(rs.ms[1].Replicas) == 3
	})
	for i := 0; i < 150; i++ {
		st.add("alerts-2", fmt.Sprintf("b%03d", i), time.Now(), alertSrc("T1021.002"))
	}
	st.refresh()
	waitFor(t, "the new alerts enriched by three", func() bool { st.refresh(); return allEnriched(st, 1) })
	if w := enrichedBy(m2); w == 0 {
		t.Error("the replica that came back wrote nothing")
	}
	if k, n := st.maxWrites(); n != 1 {
		t.Errorf("%s written %d times, want once", k, n)
	}
}

func TestReplicasConvergeOnNewerGeneration(t *testing.T) {
	st := newFakeStore()
	state := newFakeState(st)
	older, newer := pipeline(t, true), pipeline(t, false)
	rs := startReplicas(t, "old", st, state, []*enrich.Pipeline{older})
	waitFor(t, "first replica", func() bool { return testutil.ToFloat64(rs.ms[0].ShareActive) == 1 })
	rs2 := startReplicas(t, "new", st, state, []*enrich.Pipeline{newer})
	waitFor(t, "the older replica to stand aside", func() bool {
		return testutil.ToFloat64(rs.ms[0].ShareActive) == 0 && testutil.ToFloat64(rs2.ms[0].ShareActive) == 1
	})
	loadAlerts(st, "alerts-1", 100, time.Now())
	st.refresh()
	waitFor(t, "every alert on the newer generation", func() bool { st.refresh(); return allEnriched(st, 2) })
	if w := enrichedBy(rs.ms[0]); w != 0 {
		t.Errorf("the older replica wrote %v alerts", w)
	}
	if k, n := st.maxWrites(); n != 1 {
		t.Errorf("%s written %d times, want once", k, n)
	}
}
