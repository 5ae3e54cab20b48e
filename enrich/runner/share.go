package runner

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"time"
)

// Replicas share the work through the state store alone: each one renews a lease in a
// roster (one document per scope, changed only by conditional writes), and every
// replica derives the same division from it. The live members of the newest
// generation, sorted by name, take one slice each of the pending alerts (Slice: a hash
// of each alert's index and _id); members of an older
// generation hold no share until they load the newer rules, so the fleet converges on
// the newest. A member whose lease expires (killed, cut off from the store) drops out
// of everyone's view at their next heartbeat, and its slice is taken over. Views are
// not exactly simultaneous, so for up to one heartbeat two replicas may read the same
// alert; the write guarded by the alert's version lets only one of them write it.

// Member is one replica's lease in the roster.
type Member struct {
	// Instance names the replica (daemon.instance); unique among the replicas of a scope.
	Instance string `json:"instance"`
	// Generation is the number of the generation it runs (0: not registered yet).
	Generation int64 `json:"generation"`
	// Expires is when the lease ends unless renewed.
	Expires time.Time `json:"expires"`
	// Started and Renewed: when it joined and last renewed (for operators).
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
	// Session tells two processes that use the same Instance apart.
	Session string `json:"session"`
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// Roster is where replicas find each other; implemented by the Elasticsearch state
// store. A StateStore that implements it lets several replicas share the work.
type Roster interface {
	// Heartbeat writes m's lease into scope's roster, drops the leases that expired
	// before now, and returns the members whose lease is valid (m among them).
	Heartbeat(ctx context.Context, scope string, m Member, now time.Time) ([]Member, error)
	// Leave removes instance's lease (a clean stop: its share is taken over at once).
	Leave(ctx context.Context, scope, instance, session string) error
}

// Slice selects one of Max parts of the pending alerts (Max <= 1: all of them).
type Slice struct {
	ID, Max int
}

// Owns says whether the alert index/id falls in the slice: a hash of both, the same in
// every replica and for the alert's whole life.
func (s Slice) Owns(index, id string) bool {
	if s.Max <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(index))
	h.Write([]byte{'/'})
	h.Write([]byte(id))
	return int(h.Sum32()%uint32(s.Max)) == s.ID
}

func (s Slice) String() string {
	if s.Max <= 1 {
		return "all"
	}
	return fmt.Sprintf("%d/%d", s.ID, s.Max)
}

// share is what this replica works on.
type share struct {
	known   bool   // a heartbeat has succeeded at least once
	active  bool   // it holds a slice
	slice   Slice  // its slice, when active
	members int    // live members of the newest generation
	reason  string // why not active
}

// divide derives self's share from the live members: the members running the newest
// generation take one slice each, by the sorted order of their names. A name held by two
// processes (a misconfiguration, or a restart within the old session's lease) counts
// once: both take the same slice, which is duplicate work, never a slice left to nobody.
func divide(members []Member, self Member) share {
	var newest int64
	for _, m := range members {
		newest = max(newest, m.Generation)
	}
	seen := map[string]bool{}
	var names []string
	for _, m := range members {
		if m.Generation == newest && m.Generation > 0 && !seen[m.Instance] {
			seen[m.Instance] = true
			names = append(names, m.Instance)
		}
	}
	sort.Strings(names)
	sh := share{known: true, members: len(names)}
	switch {
	case self.Generation == 0:
		sh.reason = "generation not registered yet"
		return sh
	case self.Generation < newest:
		sh.reason = fmt.Sprintf("replica %s runs a newer generation (%d, ours %d); this one waits until it loads the same rules", names[0], newest, self.Generation)
		return sh
	}
	for i, n := range names {
		if n == self.Instance {
			sh.active, sh.slice = true, Slice{ID: i, Max: len(names)}
			return sh
		}
	}
	sh.reason = "not in the roster"
	return sh
}

// everything is the share of a replica that works alone, or that cannot reach the
// roster: all alerts (the version guard keeps duplicate work from double writes).
var everything = share{known: true, active: true, slice: Slice{Max: 1}, members: 1}

// membership keeps this replica's lease and share.
type membership struct {
	roster  Roster
	self    Member
	joined  time.Time // first heartbeat attempt
	lastOK  time.Time
	current share
	// logging state, so that a lasting condition is logged when it starts, not at
	// every heartbeat
	lastErr  string
	errAt    time.Time
	twinSeen bool
}

// Lease defaults.
const (
	// DefaultLease is how long a replica's lease lasts without renewal: the bound on
	// how long a killed replica's share waits before the others take it over (plus one
	// heartbeat, Lease/3, and one poll).
	DefaultLease = 15 * time.Second
)

func (r *Runner) lease() time.Duration {
	if r.o.Lease > 0 {
		return r.o.Lease
	}
	return DefaultLease
}

// sharing says whether this runner divides the work with other replicas.
func (r *Runner) sharing() bool { return r.ms != nil }

// currentShare returns the share and the channel closed when it (or the generation)
// changes next, read together.
func (r *Runner) currentShare() (share, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ms == nil {
		return everything, r.changed
	}
	return r.ms.current, r.changed
}

// runMembership renews the lease every Lease/3 until ctx ends, then leaves the roster.
func (r *Runner) runMembership(ctx context.Context) {
	every := r.lease() / 3
	for {
		start := r.now()
		r.heartbeat(ctx)
		// Every Lease/3 from start to start: a slow roster write does not stretch the
		// period towards the lease.
		if r.sleep(ctx, max(every-r.now().Sub(start), every/10)) != nil {
			break
		}
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.ms.roster.Leave(lctx, r.scope(), r.ms.self.Instance, r.ms.self.Session); err != nil {
		r.log.Warn("leaving the roster failed; the share is taken over when the lease expires", "err", err)
	}
}

// heartbeat renews the lease and recomputes the share. Each heartbeat is bounded by
// Lease/3. A replica that cannot write the roster for a whole Lease works on everything
// (the others have taken its share over by then; the version guard lets only one write
// each alert) and /readyz says why; it takes a share again when the roster can be written.
func (r *Runner) heartbeat(ctx context.Context) {
	now := r.now()
	if r.ms.joined.IsZero() {
		r.ms.joined = now
	}
	hctx, cancel := context.WithTimeout(ctx, max(r.lease()/3, time.Second))
	defer cancel()
	self := r.ms.self
	if g, err := r.generation(hctx); err == nil {
		self.Generation = g.gen.Number
	}
	self.Renewed, self.Expires = now, now.Add(r.lease())
	members, err := r.ms.roster.Heartbeat(hctx, r.scope(), self, now)
	var next share
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.m.Heartbeats.WithLabelValues("error").Inc()
		r.health.rosterResult(err)
		if msg := err.Error(); msg != r.ms.lastErr || r.now().Sub(r.ms.errAt) >= 5*time.Minute {
			r.ms.lastErr, r.ms.errAt = msg, r.now()
			r.log.Warn("renewing the replica lease failed", "err", err)
		}
		since := r.ms.lastOK
		if since.IsZero() {
			since = r.ms.joined
		}
		r.mu.Lock()
		next = r.ms.current
		r.mu.Unlock()
		if r.now().Sub(since) < r.lease() {
			return
		}
		next = everything
		next.reason = "roster unavailable"
	} else {
		r.m.Heartbeats.WithLabelValues("ok").Inc()
		r.health.rosterResult(nil)
		r.ms.lastErr = ""
		twin := false
		for _, m := range members {
			// A lease of the same name renewed since this process started is another
			// process's (an older session's lease only waits to expire).
			if m.Instance == self.Instance && m.Session != self.Session && m.Renewed.After(self.Started) {
				twin = true
				if !r.ms.twinSeen {
					r.log.Error("another process uses the same daemon.instance; both work on the same slice: give each replica its own name",
						"instance", self.Instance, "other_host", m.Host, "other_pid", m.PID)
				}
			}
		}
		r.ms.twinSeen = twin
		next = divide(members, self)
		if r.ms.lastOK.IsZero() {
			// Joining: take a share from the next heartbeat on, so that replicas started
			// together see each other before any of them starts on everything.
			next = share{members: next.members, reason: "joining"}
		}
	}
	r.mu.Lock()
	if err == nil {
		r.ms.lastOK = now
		r.ms.self = self
	}
	prev := r.ms.current
	r.ms.current = next
	if prev != next {
		r.notifyLocked()
	}
	r.mu.Unlock()
	r.m.Replicas.Set(float64(next.members))
	if next.active {
		r.m.ShareActive.Set(1)
	} else {
		// What it last saw pending is another replica's now.
		r.m.ShareActive.Set(0)
		r.m.LivePending.Set(0)
		r.m.SetOldest(time.Time{})
	}
	if prev != next && next.known {
		switch {
		case next.reason == "roster unavailable":
			r.log.Warn("the replica roster could not be written for a whole lease; working on every alert (others may too: each alert is still written once)")
		case next.active:
			r.log.Info("replica share", "slice", next.slice.String(), "replicas", next.members)
		default:
			r.log.Warn("replica holds no share", "reason", next.reason, "replicas", next.members)
		}
	}
}

// waitShare waits until this replica holds a share, or ctx ends. It returns the share
// and the channel closed when the share or the generation changes.
func (r *Runner) waitShare(ctx context.Context) (share, <-chan struct{}, error) {
	for {
		sh, changed := r.currentShare()
		if sh.known && sh.active {
			return sh, changed, nil
		}
		select {
		case <-ctx.Done():
			return sh, changed, ctx.Err()
		case <-changed:
		}
	}
}

func (r *Runner) scope() string {
	if r.o.Scope == "" {
		return "default"
	}
	return r.o.Scope
}
