package runner

import (
	"container/list"
	"hash/maphash"
	"sync"
	"time"
)

// lru is a bounded map from alert keys to values: when full, the entry used least
// recently goes. Keys are held as 64-bit hashes (a process-wide random seed), so an entry
// costs the same whatever the length of the alert's index and ID; two keys sharing a
// hash is a 1-in-2^64 event whose worst effect is one alert's attempts counted with another's
// (quarantined early, or left alone until the generation changes). Safe for
// concurrent use.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front: most recent
	items map[uint64]*list.Element
}

type lruEntry[V any] struct {
	key uint64
	val V
}

var lruSeed = maphash.MakeSeed()

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), items: map[uint64]*list.Element{}}
}

func (c *lru[V]) get(skey string) (V, bool) {
	key := maphash.String(lruSeed, skey)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) put(skey string, v V) {
	key := maphash.String(lruSeed, skey)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.Value.(*lruEntry[V]).val = v
		c.ll.MoveToFront(e)
		return
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: v})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*lruEntry[V]).key)
	}
}

// update applies fn to the value under key (the zero value when absent) and stores the
// result, in one locked step.
func (c *lru[V]) update(skey string, fn func(V) V) V {
	key := maphash.String(lruSeed, skey)
	c.mu.Lock()
	defer c.mu.Unlock()
	var v V
	e, ok := c.items[key]
	if ok {
		v = e.Value.(*lruEntry[V]).val
	}
	v = fn(v)
	if ok {
		e.Value.(*lruEntry[V]).val = v
		c.ll.MoveToFront(e)
		return v
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: v})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*lruEntry[V]).key)
	}
	return v
}

func (c *lru[V]) del(skey string) {
	key := maphash.String(lruSeed, skey)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.Remove(e)
		delete(c.items, key)
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// attempt is an alert's failure count within one generation.
type attempt struct {
	generation int64
	n          int
	reason     string
	// local: quarantined, but the marker could not be written on the alert; this
	// process leaves the alert alone until the generation changes.
	local bool
}

// attempts counts failed attempts per alert. Bounded: a process that meets more failing
// alerts than it holds forgets the oldest, which then start again from zero (the budget
// is per process, and bounds the work per alert and process).
type attempts struct{ c *lru[attempt] }

const maxTrackedAlerts = 50_000

func newAttempts() *attempts { return &attempts{c: newLRU[attempt](maxTrackedAlerts)} }

// fail records a failure and returns the count within generation gen.
func (b *attempts) fail(key string, gen int64, reason string) int {
	return b.c.update(key, func(a attempt) attempt {
		if a.generation != gen {
			a = attempt{generation: gen}
		}
		a.n++
		a.reason = reason
		return a
	}).n
}

func (b *attempts) quarantineLocally(key string, gen int64) {
	b.c.update(key, func(a attempt) attempt {
		a.generation, a.local = gen, true
		return a
	})
}

func (b *attempts) localQuarantine(key string, gen int64) bool {
	a, ok := b.c.get(key)
	return ok && a.local && a.generation == gen
}

func (b *attempts) clear(key string) { b.c.del(key) }

// written remembers the version each alert was written at for a short while, so that a
// search that still shows the version before (searches see the last refresh, one second
// or more behind) is not mistaken for pending work. Bounded by count and age.
type written struct {
	c   *lru[version]
	ttl time.Duration
	now func() time.Time
}

type version struct {
	seqNo, primaryTerm int64
	at                 time.Time
}

const recentTTL = 2 * time.Minute

func newWritten() *written {
	return &written{c: newLRU[version](maxTrackedAlerts), ttl: recentTTL, now: time.Now}
}

func (w *written) add(key string, seqNo, primaryTerm int64) {
	w.c.put(key, version{seqNo: seqNo, primaryTerm: primaryTerm, at: w.now()})
}

// stale reports whether a read of an alert at (seqNo, primaryTerm) is older than what
// this process wrote.
func (w *written) stale(key string, seqNo, primaryTerm int64) bool {
	v, ok := w.c.get(key)
	if !ok {
		return false
	}
	if w.now().Sub(v.at) > w.ttl {
		w.c.del(key)
		return false
	}
	if primaryTerm == 0 && seqNo == 0 { // the source knows no versions
		return false
	}
	return primaryTerm < v.primaryTerm || (primaryTerm == v.primaryTerm && seqNo < v.seqNo)
}
