package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
)

// fakeStore is an in-memory Store: documents with versions, the pending selection
// computed exactly (or, with unsearchable, not at all), and hooks to inject failures.
type fakeStore struct {
	mu   sync.Mutex
	docs map[string]*fakeDoc // key: index/id
	now  func() time.Time

	unsearchable bool // scans return every alert, as when the generation field is unmapped
	// writeHook, if set, decides an item's result before it is applied; ok=false applies it.
	writeHook func(d *fakeDoc, src []byte) (WriteResult, bool)
	// lostResponse, if set, applies a write and then fails the request (response lost).
	lostResponse func(n int) bool
	prepare      func(indices []string) ([]IndexProblem, error)
	scanErr      error

	writes   map[string]int // key -> successful writes
	writeReq int
	scans    int
}

type fakeDoc struct {
	index, id   string
	raw         []byte
	seq, term   int64
	time        time.Time
	hasTime     bool
	visibleRaw  []byte // what search sees (last refresh)
	visibleSeq  int64
	visibleTerm int64
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{docs: map[string]*fakeDoc{}, writes: map[string]int{}, now: time.Now}
}

func (f *fakeStore) add(index, id string, ts time.Time, src string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDoc{index: index, id: id, raw: []byte(src), seq: 1, term: 1, time: ts, hasTime: !ts.IsZero()}
	d.visibleRaw, d.visibleSeq, d.visibleTerm = d.raw, d.seq, d.term
	f.docs[index+"/"+id] = d
}

// refresh makes every write visible to scans.
func (f *fakeStore) refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.docs {
		d.visibleRaw, d.visibleSeq, d.visibleTerm = d.raw, d.seq, d.term
	}
}

func (f *fakeStore) doc(index, id string) *fakeDoc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.docs[index+"/"+id]
}

func (f *fakeStore) root(index, id, root string) map[string]any {
	f.mu.Lock()
	raw := f.docs[index+"/"+id].raw
	f.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	r, _ := m[root].(map[string]any)
	return r
}

func (f *fakeStore) Prepare(_ context.Context, indices []string) ([]string, []IndexProblem, error) {
	f.mu.Lock()
	if indices == nil {
		seen := map[string]bool{}
		for _, d := range f.docs {
			if !seen[d.index] {
				seen[d.index] = true
				indices = append(indices, d.index)
			}
		}
		sort.Strings(indices)
	}
	f.mu.Unlock()
	if f.prepare == nil {
		return indices, nil, nil
	}
	problems, err := f.prepare(indices)
	if err != nil {
		return nil, nil, err
	}
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.Index] = true
	}
	var ready []string
	for _, ix := range indices {
		if !bad[ix] {
			ready = append(ready, ix)
		}
	}
	return ready, problems, nil
}

func (f *fakeStore) pending(d *fakeDoc, spec ScanSpec) bool {
	if f.unsearchable {
		return true
	}
	src, err := enrich.DecodeMembers(d.visibleRaw, []string{spec.Root})
	if err != nil {
		return true
	}
	switch spec.Generation.Classify(enrich.ReadState(src, spec.Root)) {
	case enrich.NeedsEnrichment, enrich.NeedsStages:
		return true
	}
	return false
}

func (f *fakeStore) Scan(_ context.Context, spec ScanSpec) (Scanner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	if f.scanErr != nil {
		return nil, f.scanErr
	}
	excluded := map[string]bool{}
	for _, ix := range spec.Exclude {
		excluded[ix] = true
	}
	var sel []*fakeDoc
	oldest := time.Time{}
	for _, d := range f.docs {
		if excluded[d.index] || !f.pending(d, spec) {
			continue
		}
		if !spec.Since.IsZero() && (!d.hasTime || d.time.Before(spec.Since)) {
			continue
		}
		if spec.UntilMissing && d.hasTime {
			continue
		}
		if !spec.Until.IsZero() && d.hasTime && d.time.After(spec.Until) {
			continue
		}
		if !spec.Slice.Owns(d.index, d.id) {
			continue
		}
		sel = append(sel, d)
		if d.hasTime && (oldest.IsZero() || d.time.Before(oldest)) {
			oldest = d.time
		}
	}
	sort.Slice(sel, func(i, j int) bool {
		a, b := sel[i], sel[j]
		if a.hasTime != b.hasTime {
			return a.hasTime
		}
		if !a.time.Equal(b.time) {
			return a.time.After(b.time)
		}
		return a.index+a.id < b.index+b.id
	})
	pages := [][]*enrich.Alert{}
	size := max(spec.PageSize, 1)
	var cursors []Cursor
	for i := 0; i < len(sel); i += size {
		var page []*enrich.Alert
		for _, d := range sel[i:min(i+size, len(sel))] {
			page = append(page, &enrich.Alert{ID: d.id, Index: d.index, SeqNo: d.visibleSeq, PrimaryTerm: d.visibleTerm,
				Raw: append([]byte(nil), d.visibleRaw...)})
		}
		last := sel[min(i+size, len(sel))-1]
		cursors = append(cursors, Cursor{Time: last.time, Missing: !last.hasTime})
		pages = append(pages, page)
	}
	return &fakeScanner{pages: pages, cursors: cursors, total: len(sel), oldest: oldest, want: spec.WantTotal}, nil
}

type fakeScanner struct {
	pages   [][]*enrich.Alert
	cursors []Cursor
	n       int
	total   int
	oldest  time.Time
	want    bool
}

func (s *fakeScanner) Next(context.Context) (Page, error) {
	p := Page{Total: -1}
	if s.n == 0 && s.want {
		p.Total, p.Oldest = s.total, s.oldest
	}
	if s.n < len(s.pages) {
		p.Alerts, p.Cursor = s.pages[s.n], s.cursors[s.n]
	}
	s.n++
	return p, nil
}

func (s *fakeScanner) Close(context.Context) {}

func (f *fakeStore) Write(_ context.Context, items []WriteItem) ([]WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeReq++
	out := make([]WriteResult, len(items))
	for i, it := range items {
		d := f.docs[it.Alert.Index+"/"+it.Alert.ID]
		if d == nil {
			out[i] = WriteResult{Status: ItemGone, Code: 404}
			continue
		}
		if f.writeHook != nil {
			if r, ok := f.writeHook(d, it.Source); ok {
				out[i] = r
				continue
			}
		}
		if it.Alert.SeqNo != d.seq || it.Alert.PrimaryTerm != d.term {
			out[i] = WriteResult{Status: ItemConflict, Code: 409, Reason: "version_conflict_engine_exception"}
			continue
		}
		if !json.Valid(it.Source) {
			panic(fmt.Sprintf("invalid source written: %s", it.Source))
		}
		d.raw = append([]byte(nil), it.Source...)
		d.seq++
		f.writes[it.Alert.Index+"/"+it.Alert.ID]++
		out[i] = WriteResult{Status: ItemWritten, Code: 200, SeqNo: d.seq, PrimaryTerm: d.term}
	}
	if f.lostResponse != nil && f.lostResponse(f.writeReq) {
		return nil, fmt.Errorf("read bulk response: connection reset: %w", ErrUnavailable)
	}
	return out, nil
}

func (f *fakeStore) Reread(_ context.Context, alerts []*enrich.Alert) ([]*enrich.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*enrich.Alert
	for _, a := range alerts {
		if d := f.docs[a.Index+"/"+a.ID]; d != nil {
			out = append(out, &enrich.Alert{ID: d.id, Index: d.index, SeqNo: d.seq, PrimaryTerm: d.term, Raw: append([]byte(nil), d.raw...)})
		}
	}
	return out, nil
}

func (f *fakeStore) writesOf(index, id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes[index+"/"+id]
}

func (f *fakeStore) maxWrites() (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, n := "", 0
	for key, w := range f.writes {
		if w > n {
			k, n = key, w
		}
	}
	return k, n
}

// fakeState is an in-memory StateStore and Roster.
type fakeState struct {
	mu     sync.Mutex
	gens   []enrich.Generation
	kv     map[string][]byte
	err    error
	store  *fakeStore
	roster map[string][]Member // scope -> leases
	// dead instances neither renew nor leave (as after kill -9).
	dead map[string]bool
}

var _ Roster = (*fakeState)(nil)

func (s *fakeState) Heartbeat(_ context.Context, scope string, m Member, now time.Time) ([]Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if s.dead[m.Instance] {
		return nil, fmt.Errorf("killed: %w", ErrUnavailable)
	}
	if s.roster == nil {
		s.roster = map[string][]Member{}
	}
	live := []Member{m}
	for _, o := range s.roster[scope] {
		if o.Instance != m.Instance && o.Expires.After(now) {
			live = append(live, o)
		}
	}
	s.roster[scope] = live
	return append([]Member(nil), live...), nil
}

func (s *fakeState) Leave(_ context.Context, scope, instance, session string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead[instance] {
		return nil
	}
	keep := s.roster[scope][:0]
	for _, o := range s.roster[scope] {
		if o.Instance != instance || o.Session != session {
			keep = append(keep, o)
		}
	}
	s.roster[scope] = keep
	return nil
}

// kill makes instance stop renewing its lease and never leave.
func (s *fakeState) kill(instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = map[string]bool{}
	}
	s.dead[instance] = true
}

var _ StateStore = (*fakeState)(nil)

func newFakeState(store *fakeStore) *fakeState {
	return &fakeState{kv: map[string][]byte{}, store: store}
}

func (s *fakeState) RegisterGeneration(_ context.Context, g enrich.Generation, root string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	var top int64
	for _, x := range s.gens {
		if x.Hash == g.Hash {
			return x.Number, nil
		}
		top = max(top, x.Number)
	}
	if s.store != nil {
		s.store.mu.Lock()
		for _, d := range s.store.docs {
			src, _ := enrich.DecodeMembers(d.raw, []string{root})
			top = max(top, enrich.ReadState(src, root).Generation)
		}
		s.store.mu.Unlock()
	}
	g.Number = top + 1
	s.gens = append(s.gens, g)
	return g.Number, nil
}

func (s *fakeState) NewestGeneration(context.Context) (enrich.Generation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n enrich.Generation
	for _, x := range s.gens {
		if x.Number > n.Number {
			n = x
		}
	}
	return n, nil
}

func (s *fakeState) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv[key], s.err
}

func (s *fakeState) Save(_ context.Context, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.kv[key] = append([]byte(nil), v...)
	return nil
}

func alertSrc(technique string, extra ...string) string {
	parts := append([]string{fmt.Sprintf(`"threat":{"technique":{"id":[%q]}}`, technique)}, extra...)
	return "{" + strings.Join(parts, ",") + "}"
}
