package runner

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Replicas share the work through the state store alone: each one renews a lease in a
// roster (one document per scope, changed only by conditional writes), and every
// replica derives the same division from it. The live members of the newest
// generation, sorted by name, take one slice each of the pending alerts (Slice: the
// store hashes each alert's sequence number into Max slices); members of an older
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
// generation, sorted by instance, take one slice each.
func divide(members []Member, self Member) share {
	var newest int64
	for _, m := range members {
		newest = max(newest, m.Generation)
	}
	var names []string
	var newer string
	for _, m := range members {
		if m.Generation == newest && m.Generation > 0 {
			names = append(names, m.Instance)
			if m.Instance != self.Instance {
				newer = m.Instance
			}
		}
	}
	sort.Strings(names)
	sh := share{known: true, members: len(names)}
	switch {
	case self.Generation == 0:
		sh.reason = "generation not registered yet"
		return sh
	case self.Generation < newest:
		sh.reason = fmt.Sprintf("replica %s runs a newer generation (%d, ours %d); this one waits until it loads the same rules", newer, newest, self.Generation)
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

// membership keeps this replica's lease and share.
type membership struct {
	roster  Roster
	self    Member
	lastOK  time.Time
	current share
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

// currentShare returns the share and a channel closed when it changes.
func (r *Runner) currentShare() share {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ms == nil {
		return share{known: true, active: true, slice: Slice{Max: 1}, members: 1}
	}
	return r.ms.current
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

// heartbeat renews the lease and recomputes the share. A replica that cannot renew its
// lease for a whole Lease stops working: the others take its share over by then.
func (r *Runner) heartbeat(ctx context.Context) {
	now := r.now()
	self := r.ms.self
	if g, err := r.generation(ctx); err == nil {
		self.Generation = g.gen.Number
	}
	self.Renewed, self.Expires = now, now.Add(r.lease())
	members, err := r.ms.roster.Heartbeat(ctx, r.scope(), self, now)
	var next share
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.m.Heartbeats.WithLabelValues("error").Inc()
		r.mu.Lock()
		next = r.ms.current
		expired := !r.ms.lastOK.IsZero() && r.now().Sub(r.ms.lastOK) >= r.lease()
		r.mu.Unlock()
		r.log.Warn("renewing the replica lease failed", "err", err)
		if !expired {
			return
		}
		next = share{known: true, reason: "lease expired: the roster could not be written for " + r.lease().String()}
	} else {
		r.m.Heartbeats.WithLabelValues("ok").Inc()
		for _, m := range members {
			if m.Instance == self.Instance && m.Session != self.Session {
				r.log.Error("another process uses the same daemon.instance; give each replica its own", "instance", self.Instance,
					"other_host", m.Host, "other_pid", m.PID)
			}
		}
		next = divide(members, self)
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
		r.health.storeResult(nil) // waiting is healthy: the roster was written
	}
	if prev != next {
		if next.active {
			r.log.Info("replica share", "slice", next.slice.String(), "replicas", next.members)
		} else {
			r.log.Warn("replica holds no share", "reason", next.reason, "replicas", next.members)
		}
	}
}

// waitShare waits until this replica holds a share, or ctx ends.
func (r *Runner) waitShare(ctx context.Context) (share, error) {
	for {
		sh := r.currentShare()
		if sh.known && sh.active {
			return sh, nil
		}
		select {
		case <-ctx.Done():
			return sh, ctx.Err()
		case <-r.changedCh():
		}
	}
}

func (r *Runner) scope() string {
	if r.o.Scope == "" {
		return "default"
	}
	return r.o.Scope
}
