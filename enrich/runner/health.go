package runner

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich/metrics"
)

// health tracks which indices are ready for writes and which are left out, and why.
// An index with a problem is left out of every scan, so it never blocks the others, and
// is tried again after retryAfter.
type health struct {
	mu         sync.Mutex
	ready      map[string]bool // prepared (mapped) for the current generation
	problems   map[string]*problem
	retryAfter time.Duration
	m          *metrics.Metrics
	log        *slog.Logger
	now        func() time.Time
	// store is the whole store's state: nil when the last request went through.
	store     error
	storeSeen time.Time
	// roster is the last heartbeat's error (replicas sharing the work); nil when it
	// went through.
	roster error
}

type problem struct {
	IndexProblem
	since, retryAt time.Time
}

// maxIndexProblems bounds the problems kept (each is an index left out of scans).
const maxIndexProblems = 1000

func newHealth(retryAfter time.Duration, m *metrics.Metrics, log *slog.Logger) *health {
	return &health{ready: map[string]bool{}, problems: map[string]*problem{}, retryAfter: retryAfter,
		m: m, log: log, now: time.Now}
}

// reset forgets which indices are ready (a new generation may map new fields).
func (h *health) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = map[string]bool{}
}

// unknown returns the indices among names that are neither ready nor left out.
func (h *health) unknown(names []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		if !h.ready[n] && h.problems[n] == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// prepared records the result of preparing indices: the given ones are ready unless a
// problem names them.
func (h *health) prepared(indices []string, problems []IndexProblem) {
	h.mu.Lock()
	defer h.mu.Unlock()
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.Index] = true
		h.addLocked(p)
	}
	for _, ix := range indices {
		if !bad[ix] {
			h.ready[ix] = true
			if old := h.problems[ix]; old != nil {
				delete(h.problems, ix)
				h.log.Info("index usable again", "index", ix, "was", old.Reason)
			}
		}
	}
	h.updateMetricsLocked()
}

// fromWrite records a write refused because of the index.
func (h *health) fromWrite(index string, r WriteResult) {
	reason, permanent := "index_failed", false
	switch {
	case strings.Contains(r.Reason, "cluster_block_exception") || strings.Contains(r.Reason, "index_closed"):
		reason = "read_only"
	case strings.Contains(r.Reason, "Limit of total fields"):
		reason, permanent = "field_limit", true
	case strings.Contains(r.Reason, "security_exception"):
		reason, permanent = "forbidden", true
	case strings.Contains(r.Reason, "mapper") || strings.Contains(r.Reason, "parsing") || strings.Contains(r.Reason, "strict_dynamic"):
		reason, permanent = "mapping_conflict", true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.problems[index] != nil {
		return
	}
	delete(h.ready, index)
	h.addLocked(IndexProblem{Index: index, Reason: reason, Detail: fmt.Sprintf("write %d: %s", r.Code, r.Reason), Permanent: permanent})
	h.updateMetricsLocked()
}

func (h *health) addLocked(p IndexProblem) {
	if old := h.problems[p.Index]; old != nil {
		old.IndexProblem = p
		old.retryAt = h.now().Add(h.retryAfter)
		return
	}
	if len(h.problems) >= maxIndexProblems {
		return
	}
	now := h.now()
	h.problems[p.Index] = &problem{IndexProblem: p, since: now, retryAt: now.Add(h.retryAfter)}
	h.log.Error("index left out; the other indices go on", "index", p.Index, "reason", p.Reason,
		"detail", p.Detail, "permanent", p.Permanent, "retry_in", h.retryAfter.String())
}

func (h *health) updateMetricsLocked() {
	counts := map[string]int{}
	for _, r := range metrics.IndexProblemReasons {
		counts[r] = 0
	}
	for _, p := range h.problems {
		counts[p.Reason]++
	}
	for r, n := range counts {
		h.m.IndexProblems.WithLabelValues(r).Set(float64(n))
	}
}

// excluded returns the indices to leave out of scans.
func (h *health) excluded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.problems))
	for ix := range h.problems {
		out = append(out, ix)
	}
	sort.Strings(out)
	return out
}

// due returns the left-out indices whose retry time has come.
func (h *health) due() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var out []string
	for ix, p := range h.problems {
		if !now.Before(p.retryAt) {
			out = append(out, ix)
			p.retryAt = now.Add(h.retryAfter)
		}
	}
	sort.Strings(out)
	return out
}

// list returns the current problems, sorted by index.
func (h *health) list() []IndexProblem {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]IndexProblem, 0, len(h.problems))
	for _, p := range h.problems {
		out = append(out, p.IndexProblem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// storeResult records whether the last request to the store as a whole went through.
func (h *health) storeResult(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.store = err
	if err == nil {
		h.storeSeen = h.now()
	}
}

// rosterResult records the outcome of a heartbeat.
func (h *health) rosterResult(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.roster = err
}

// status returns whether the runner is ready and a detail text: the store's state and
// every index left out.
func (h *health) status(maxAge time.Duration) (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	ready := true
	switch {
	case h.storeSeen.IsZero():
		ready = false
		b.WriteString("not ready: no successful pass yet")
		if h.store != nil {
			fmt.Fprintf(&b, " (%v)", h.store)
		}
		b.WriteByte('\n')
	case h.store != nil:
		ready = false
		fmt.Fprintf(&b, "not ready: %v\n", h.store)
	case h.roster != nil:
		ready = false
		fmt.Fprintf(&b, "not ready: replica roster: %v\n", h.roster)
	case h.now().Sub(h.storeSeen) > maxAge:
		ready = false
		fmt.Fprintf(&b, "not ready: no successful pass for %s\n", h.now().Sub(h.storeSeen).Round(time.Second))
	default:
		b.WriteString("ready\n")
	}
	ixs := make([]string, 0, len(h.problems))
	for ix := range h.problems {
		ixs = append(ixs, ix)
	}
	sort.Strings(ixs)
	for _, ix := range ixs {
		p := h.problems[ix]
		fmt.Fprintf(&b, "index %s left out since %s: %s: %s\n", ix, p.since.UTC().Format(time.RFC3339), p.Reason, p.Detail)
	}
	return ready, b.String()
}
