package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// DefaultStateIndex is the hidden index where enricher keeps what replicas and restarts
// share: the registered generations and the backfill checkpoints.
const DefaultStateIndex = ".enricher-state"

// State is the Elasticsearch runner.StateStore: small documents in one hidden index.
//
// Generation numbers: a fingerprint's document (generation-<hash>) holds its number;
// numbers are claimed with create-only documents (generation-number-<n>), so two
// daemons registering at once never get the same number, and a new number is above
// every number registered and every number found on alerts (a state index deleted and
// created again does not restart the count).
type State struct {
	c       *Client
	index   string
	alerts  []string
	version string

	once sync.Mutex
	made bool
}

var _ runner.StateStore = (*State)(nil)

// NewState returns the state store in index (DefaultStateIndex when empty); alerts are
// the alert index patterns (to find the generations already written on alerts).
func NewState(c *Client, index string, alerts []string, enricherVersion string) *State {
	if index == "" {
		index = DefaultStateIndex
	}
	return &State{c: c, index: index, alerts: alerts, version: enricherVersion}
}

// Index returns the state index's name.
func (s *State) Index() string { return s.index }

// StateMapping is the state index's mapping.
func StateMapping() map[string]any {
	kw := map[string]any{"type": "keyword"}
	return map[string]any{"dynamic": false, "properties": map[string]any{
		"type": kw, "hash": kw, "key": kw, "rules_version": kw, "enricher_version": kw,
		"generation": map[string]any{"type": "long"},
		"updated":    map[string]any{"type": "date"},
		"value":      map[string]any{"type": "object", "enabled": false},
	}}
}

// Ensure creates the state index when it does not exist (`enricher setup` does it once;
// the daemon checks it at start).
func (s *State) Ensure(ctx context.Context) error {
	s.once.Lock()
	defer s.once.Unlock()
	if s.made {
		return nil
	}
	settings := map[string]any{"index.hidden": true, "number_of_shards": 1, "auto_expand_replicas": "0-1"}
	if _, err := ensureIndex(ctx, s.c, "state", "state index", s.index, "", settings, StateMapping()); err != nil {
		return err
	}
	s.made = true
	return nil
}

// ensureIndex creates index (the state or the detail index: what names it in errors, hint
// is added to a refused creation) with settings and mapping when it does not exist. It
// returns the index's GET _mapping body when it was there, nil when it made it.
func ensureIndex(ctx context.Context, c *Client, op, what, index, hint string, settings, mapping map[string]any) ([]byte, error) {
	code, body, err := c.Do(ctx, op, http.MethodGet, "/"+url.PathEscape(index)+"/_mapping", url.Values{"expand_wildcards": {"all"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("check %s %s: %w", what, index, err)
	}
	if code == http.StatusOK {
		return body, nil
	}
	if code != http.StatusNotFound {
		return nil, statusError("check "+what+" "+index, code, body)
	}
	b, _ := json.Marshal(map[string]any{"settings": settings, "mappings": mapping})
	code, body, err = c.Do(ctx, op, http.MethodPut, "/"+url.PathEscape(index), nil, b)
	if err != nil {
		return nil, fmt.Errorf("create %s %s: %w", what, index, err)
	}
	if code != http.StatusOK && !(code == http.StatusBadRequest && containsType(body, "resource_already_exists_exception")) {
		return nil, statusError("create "+what+" "+index+hint, code, body)
	}
	return nil, nil
}

func containsType(body []byte, t string) bool {
	var e struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Type == t
}

type stateDoc struct {
	Type            string          `json:"type"`
	Hash            string          `json:"hash,omitempty"`
	Key             string          `json:"key,omitempty"`
	Generation      int64           `json:"generation,omitempty"`
	RulesVersion    string          `json:"rules_version,omitempty"`
	EnricherVersion string          `json:"enricher_version,omitempty"`
	Updated         time.Time       `json:"updated"`
	Value           json.RawMessage `json:"value,omitempty"`
}

func (s *State) get(ctx context.Context, id string) (*stateDoc, error) {
	d, _, err := s.getVersioned(ctx, id)
	return d, err
}

// docVersion is the version a document was read or written at (its sequence number and
// primary term), for a write conditional on it.
type docVersion struct{ seq, term int64 }

// getVersioned reads a state document and its version; nil when there is none.
func (s *State) getVersioned(ctx context.Context, id string) (*stateDoc, docVersion, error) {
	code, body, err := s.c.Do(ctx, "state", http.MethodGet, "/"+url.PathEscape(s.index)+"/_doc/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, docVersion{}, fmt.Errorf("read %s/%s: %w", s.index, id, err)
	}
	if code == http.StatusNotFound {
		if bytes.Contains(body, []byte("index_not_found_exception")) {
			// The state index was deleted while running: check (and create) it again
			// at the next Ensure rather than write into an index made by auto-creation.
			s.once.Lock()
			s.made = false
			s.once.Unlock()
			return nil, docVersion{}, fmt.Errorf("read %s/%s: the state index is gone: %w", s.index, id, runner.ErrUnavailable)
		}
		return nil, docVersion{}, nil
	}
	if code != http.StatusOK {
		return nil, docVersion{}, statusError("read "+s.index+"/"+id, code, body)
	}
	var res struct {
		Found  bool     `json:"found"`
		Seq    int64    `json:"_seq_no"`
		Term   int64    `json:"_primary_term"`
		Source stateDoc `json:"_source"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, docVersion{}, fmt.Errorf("decode %s/%s: %w", s.index, id, err)
	}
	if !res.Found {
		return nil, docVersion{}, nil
	}
	return &res.Source, docVersion{res.Seq, res.Term}, nil
}

// errExists is a create that found the document there already.
var errExists = errors.New("document exists")

// errChanged is a conditional write that lost to another writer.
var errChanged = errors.New("changed meanwhile")

func (s *State) put(ctx context.Context, id string, d stateDoc, create bool) error {
	_, err := s.write(ctx, id, d, create, nil)
	if errors.Is(err, errChanged) {
		return errExists
	}
	return err
}

// write writes a state document: create-only, over the version if (when not nil), or
// over whatever is there. A conflict is errChanged. It returns the new version.
func (s *State) write(ctx context.Context, id string, d stateDoc, create bool, ifAt *docVersion) (docVersion, error) {
	return s.writeRefresh(ctx, id, d, create, ifAt, true)
}

// writeRefresh is write, waiting for a refresh (refresh=true: what searches the state
// index must see at once) or not (documents only read by ID, in real time).
func (s *State) writeRefresh(ctx context.Context, id string, d stateDoc, create bool, ifAt *docVersion, refresh bool) (docVersion, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return docVersion{}, err
	}
	op := "_doc"
	if create {
		op = "_create"
	}
	q := url.Values{}
	if refresh {
		q.Set("refresh", "true")
	}
	if ifAt != nil {
		q.Set("if_seq_no", strconv.FormatInt(ifAt.seq, 10))
		q.Set("if_primary_term", strconv.FormatInt(ifAt.term, 10))
	}
	code, body, err := s.c.Do(ctx, "state", http.MethodPut, "/"+url.PathEscape(s.index)+"/"+op+"/"+url.PathEscape(id), q, b)
	if err != nil {
		return docVersion{}, fmt.Errorf("write %s/%s: %w", s.index, id, err)
	}
	switch {
	case code == http.StatusConflict && (create || ifAt != nil):
		return docVersion{}, errChanged
	case code != http.StatusOK && code != http.StatusCreated:
		return docVersion{}, statusError("write "+s.index+"/"+id, code, body)
	}
	var res struct {
		Seq  int64 `json:"_seq_no"`
		Term int64 `json:"_primary_term"`
	}
	_ = json.Unmarshal(body, &res)
	return docVersion{res.Seq, res.Term}, nil
}

// RegisterGeneration implements runner.StateStore.
func (s *State) RegisterGeneration(ctx context.Context, g enrich.Generation, root string) (int64, error) {
	if err := s.Ensure(ctx); err != nil {
		return 0, err
	}
	id := "generation-" + g.Hash
	for tries := 0; tries < 20; tries++ {
		if d, err := s.get(ctx, id); err != nil {
			return 0, err
		} else if d != nil {
			return d.Generation, nil
		}
		top, err := s.maxGeneration(ctx, root)
		if err != nil {
			return 0, err
		}
		n := top + 1
		now := time.Now().UTC()
		if err := s.put(ctx, fmt.Sprintf("generation-number-%d", n), stateDoc{Type: "generation_number", Hash: g.Hash,
			Generation: n, Updated: now}, true); errors.Is(err, errExists) {
			continue // taken by another daemon: count again
		} else if err != nil {
			return 0, err
		}
		err = s.put(ctx, id, stateDoc{Type: "generation", Hash: g.Hash, Generation: n, RulesVersion: g.RulesVersion,
			EnricherVersion: s.version, Updated: now}, true)
		if errors.Is(err, errExists) {
			continue // the same fingerprint registered at the same moment: read its number
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	return 0, fmt.Errorf("register generation %s: %w: too many concurrent registrations", g, ErrUnavailable)
}

// maxGeneration is the largest generation number registered or found on alerts.
func (s *State) maxGeneration(ctx context.Context, root string) (int64, error) {
	agg := func(path, field string, q url.Values) (int64, error) {
		b, _ := json.Marshal(map[string]any{"size": 0, "track_total_hits": false,
			"aggs": map[string]any{"top": map[string]any{"max": map[string]any{"field": field}}}})
		code, body, err := s.c.Do(ctx, "state", http.MethodPost, path+"/_search", q, b)
		if err != nil {
			return 0, fmt.Errorf("find the newest generation: %w", err)
		}
		if code != http.StatusOK {
			return 0, statusError("find the newest generation", code, body)
		}
		var res struct {
			Aggregations struct {
				Top struct {
					Value *float64 `json:"value"`
				} `json:"top"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return 0, err
		}
		if v := res.Aggregations.Top.Value; v != nil {
			return int64(*v), nil
		}
		return 0, nil
	}
	a, err := agg("/"+url.PathEscape(s.index), "generation", nil)
	if err != nil {
		return 0, err
	}
	b, err := agg("/"+joinIndices(s.alerts), enrich.Under(root, enrich.FieldGeneration), hiddenToo())
	if err != nil {
		return 0, err
	}
	c, err := agg("/"+joinIndices(s.alerts), enrich.Under(root, enrich.FieldQuarantineGeneration), hiddenToo())
	if err != nil {
		return 0, err
	}
	return max(a, b, c), nil
}

// NewestGeneration implements runner.StateStore.
func (s *State) NewestGeneration(ctx context.Context) (enrich.Generation, error) {
	if err := s.Ensure(ctx); err != nil {
		return enrich.Generation{}, err
	}
	b, _ := json.Marshal(map[string]any{"size": 1, "query": map[string]any{"term": map[string]any{"type": "generation"}},
		"sort": []any{map[string]any{"generation": "desc"}}})
	code, body, err := s.c.Do(ctx, "state", http.MethodPost, "/"+url.PathEscape(s.index)+"/_search", nil, b)
	if err != nil {
		return enrich.Generation{}, fmt.Errorf("read generations: %w", err)
	}
	if code != http.StatusOK {
		return enrich.Generation{}, statusError("read generations", code, body)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source stateDoc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil || len(res.Hits.Hits) == 0 {
		return enrich.Generation{}, err
	}
	d := res.Hits.Hits[0].Source
	return enrich.Generation{Number: d.Generation, Hash: d.Hash, RulesVersion: d.RulesVersion}, nil
}

// Load implements runner.StateStore.
func (s *State) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.Ensure(ctx); err != nil {
		return nil, err
	}
	d, err := s.get(ctx, "checkpoint-"+key)
	if err != nil || d == nil {
		return nil, err
	}
	return d.Value, nil
}

// Save implements runner.StateStore.
func (s *State) Save(ctx context.Context, key string, value []byte) error {
	if err := s.Ensure(ctx); err != nil {
		return err
	}
	return s.put(ctx, "checkpoint-"+key, stateDoc{Type: "checkpoint", Key: key, Updated: time.Now().UTC(),
		Value: json.RawMessage(value)}, false)
}

// rosterDoc is a scope's roster: the leases of the replicas sharing its work.
type rosterDoc struct {
	Members []runner.Member `json:"members"`
}

// maxRoster bounds a roster's members: more replicas than this over one scope is a
// misconfiguration (a new instance name at every start would not get there: expired
// leases are dropped at every heartbeat).
const maxRoster = 256

// Heartbeat implements runner.Roster: the roster is one document per scope, read in
// real time and written only over the version read, so concurrent heartbeats never
// lose each other's leases (the loser reads again and retries, a bounded number of times).
func (s *State) Heartbeat(ctx context.Context, scope string, m runner.Member, now time.Time) ([]runner.Member, error) {
	if err := s.Ensure(ctx); err != nil {
		return nil, err
	}
	id := "roster-" + scope
	for attempt := 0; ; attempt++ {
		d, at, err := s.getVersioned(ctx, id)
		if err != nil {
			return nil, err
		}
		var r rosterDoc
		if d != nil && len(d.Value) > 0 {
			if err := json.Unmarshal(d.Value, &r); err != nil {
				// Unreadable (written by hand?): start a new roster; the others rejoin
				// at their next heartbeat.
				r = rosterDoc{}
			}
		}
		// Leases are kept one lease length past their end before they are dropped, so
		// that a replica whose clock runs ahead does not erase the others' leases.
		grace := m.Expires.Sub(m.Renewed)
		keep := []runner.Member{m}
		for _, o := range r.Members {
			if o.Instance != m.Instance && o.Expires.Add(grace).After(now) && len(keep) < maxRoster {
				keep = append(keep, o)
			}
		}
		if len(keep) == maxRoster {
			return nil, fmt.Errorf("roster %s/%s holds %d replicas, the most allowed: %w", s.index, id, maxRoster, runner.ErrRefused)
		}
		val, _ := json.Marshal(rosterDoc{Members: keep})
		doc := stateDoc{Type: "roster", Key: scope, Updated: now.UTC(), EnricherVersion: s.version, Value: val}
		var ifAt *docVersion
		if d != nil {
			ifAt = &at
		}
		// Read back by ID only: no refresh to wait for, which on a busy cluster can take
		// longer than a lease.
		_, err = s.writeRefresh(ctx, id, doc, d == nil, ifAt, false)
		if errors.Is(err, errChanged) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		// The valid leases; one of the same name but another session (two processes
		// with one daemon.instance, or the lease of this one's previous run) too: the
		// runner tells them apart.
		var live []runner.Member
		for _, o := range keep {
			if o.Expires.After(now) {
				live = append(live, o)
			}
		}
		for _, o := range r.Members {
			if o.Instance == m.Instance && o.Session != m.Session && o.Expires.After(now) {
				live = append(live, o)
			}
		}
		return live, nil
	}
}

// Leave implements runner.Roster: it removes instance's lease if it is still this
// session's.
func (s *State) Leave(ctx context.Context, scope, instance, session string) error {
	id := "roster-" + scope
	for attempt := 0; attempt < 5; attempt++ {
		d, at, err := s.getVersioned(ctx, id)
		if err != nil || d == nil {
			return err
		}
		var r rosterDoc
		if json.Unmarshal(d.Value, &r) != nil {
			return nil
		}
		keep := r.Members[:0]
		for _, o := range r.Members {
			if o.Instance != instance || o.Session != session {
				keep = append(keep, o)
			}
		}
		if len(keep) == len(r.Members) {
			return nil
		}
		val, _ := json.Marshal(rosterDoc{Members: keep})
		d.Value = val
		d.Updated = time.Now().UTC()
		if _, err = s.writeRefresh(ctx, id, *d, false, &at, false); !errors.Is(err, errChanged) {
			return err
		}
	}
	return fmt.Errorf("leave roster %s/%s: %w", s.index, id, errChanged)
}
