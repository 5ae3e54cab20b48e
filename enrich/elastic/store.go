package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// StoreOptions configure a Store.
type StoreOptions struct {
	// Indices are the alert index patterns (hidden indices included).
	Indices []string
	// TimeField orders alerts and splits the live window from the history.
	TimeField string
	// Query is an optional query that further limits alerts.
	Query map[string]any
	// Root is enricher's root object.
	Root string
	// Namespaces are the plugin namespaces and their mappings.
	Namespaces map[string]map[string]any
	// InstallMappings puts enricher's field mappings on the alert indices.
	InstallMappings bool
	// MaxRequestBytes and MaxRequestItems bound one _bulk request.
	MaxRequestBytes int
	MaxRequestItems int
	// PITKeepAlive is the keep-alive of a point in time between two pages; PITMaxAge
	// bounds how long one point in time is used before a long scan opens a fresh one (a
	// point in time keeps the segments of its start alive, disk the store cannot free).
	PITKeepAlive time.Duration
	PITMaxAge    time.Duration
}

// Store is the Elasticsearch runner.Store: point-in-time scans, guarded _bulk writes of
// whole documents, real-time re-reads, and field mappings.
type Store struct {
	c    *Client
	o    StoreOptions
	log  *slog.Logger
	warn sync.Map
}

var _ runner.Store = (*Store)(nil)

// NewStore returns a Store over a client.
func NewStore(c *Client, o StoreOptions, log *slog.Logger) *Store {
	if o.TimeField == "" {
		o.TimeField = "@timestamp"
	}
	if o.Root == "" {
		o.Root = enrich.DefaultRoot
	}
	if o.MaxRequestItems <= 0 {
		o.MaxRequestItems = 1000
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 10 << 20
	}
	if o.PITKeepAlive <= 0 {
		o.PITKeepAlive = 5 * time.Minute
	}
	if o.PITMaxAge <= 0 {
		o.PITMaxAge = 10 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{c: c, o: o, log: log}
}

// Client returns the store's client.
func (s *Store) Client() *Client { return s.c }

func (s *Store) warnOnce(key, msg string, args ...any) {
	if _, done := s.warn.LoadOrStore(key, true); !done {
		s.log.Warn(msg, args...)
	}
}

// pendingQuery is the query for the alerts a scan selects: carrying a technique field,
// within the time bounds, not in an excluded index, and not done for the generation
// (not enriched by it or a newer one, unless stages are pending; not quarantined by it
// or a newer one). enrich.Generation.Classify decides for each alert read; this query
// only spares reading the others.
func (s *Store) pendingQuery(spec runner.ScanSpec) map[string]any {
	root := spec.Root
	gen := spec.Generation.Number
	var carries []any
	for _, f := range spec.TechniqueFields {
		if f.Kind == enrich.FieldTag {
			carries = append(carries, map[string]any{"prefix": map[string]any{
				f.Path: map[string]any{"value": "attack.t", "case_insensitive": true}}})
			continue
		}
		carries = append(carries, map[string]any{"exists": map[string]any{"field": f.Path}})
	}
	filter := []any{map[string]any{"bool": map[string]any{"should": carries, "minimum_should_match": 1}}}
	if len(s.o.Query) > 0 {
		filter = append(filter, s.o.Query)
	}
	tf := s.o.TimeField
	if !spec.Since.IsZero() {
		filter = append(filter, map[string]any{"range": map[string]any{tf: map[string]any{
			"gte": spec.Since.UnixMilli(), "format": "epoch_millis"}}})
	}
	noTime := map[string]any{"bool": map[string]any{"must_not": map[string]any{"exists": map[string]any{"field": tf}}}}
	switch {
	case spec.UntilMissing:
		filter = append(filter, noTime)
	case !spec.Until.IsZero():
		filter = append(filter, map[string]any{"bool": map[string]any{"minimum_should_match": 1, "should": []any{
			map[string]any{"range": map[string]any{tf: map[string]any{"lte": spec.Until.UnixMilli(), "format": "epoch_millis"}}},
			noTime,
		}}})
	}
	mustNot := []any{}
	if len(spec.Exclude) > 0 {
		mustNot = append(mustNot, map[string]any{"terms": map[string]any{"_index": spec.Exclude}})
	}
	genField := enrich.Under(root, enrich.FieldGeneration)
	q := map[string]any{"filter": filter, "must_not": mustNot}
	if gen > 0 {
		mustNot = append(mustNot, map[string]any{"range": map[string]any{
			enrich.Under(root, enrich.FieldQuarantineGeneration): map[string]any{"gte": gen}}})
		q["must_not"] = mustNot
		q["should"] = []any{
			map[string]any{"bool": map[string]any{"must_not": map[string]any{"range": map[string]any{genField: map[string]any{"gte": gen}}}}},
			map[string]any{"bool": map[string]any{"filter": []any{
				map[string]any{"term": map[string]any{genField: gen}},
				map[string]any{"exists": map[string]any{"field": enrich.Under(root, enrich.PendingField)}},
			}}},
		}
		q["minimum_should_match"] = 1
	} else {
		q["must_not"] = append(mustNot, map[string]any{"term": map[string]any{
			enrich.Under(root, enrich.FieldRulesetHash): spec.Generation.Hash}})
	}
	return map[string]any{"bool": q}
}

// needsEnrichment selects, among pending alerts, those not enriched by the generation
// (not merely waiting for a stage): the alerts whose age is the lag.
func needsEnrichment(spec runner.ScanSpec) map[string]any {
	if spec.Generation.Number == 0 {
		return map[string]any{"match_all": map[string]any{}}
	}
	return map[string]any{"bool": map[string]any{"must_not": map[string]any{"range": map[string]any{
		enrich.Under(spec.Root, enrich.FieldGeneration): map[string]any{"gte": spec.Generation.Number}}}}}
}

type hit struct {
	Index       string          `json:"_index"`
	ID          string          `json:"_id"`
	SeqNo       *int64          `json:"_seq_no"`
	PrimaryTerm *int64          `json:"_primary_term"`
	Source      json.RawMessage `json:"_source"`
	// Sort are the hit's sort values: the time (a number), then the tiebreaker (a number,
	// or _id's string on OpenSearch, see pitTiebreaker).
	Sort []json.RawMessage `json:"sort"`
}

type searchResponse struct {
	PitID string `json:"pit_id"`
	Hits  struct {
		Total struct {
			Value int `json:"value"`
		} `json:"total"`
		Hits []hit `json:"hits"`
	} `json:"hits"`
	Aggregations struct {
		Need struct {
			Oldest struct {
				Value *float64 `json:"value"`
			} `json:"oldest"`
		} `json:"need"`
	} `json:"aggregations"`
}

// Scan implements runner.Store.
func (s *Store) Scan(ctx context.Context, spec runner.ScanSpec) (runner.Scanner, error) {
	if spec.PageSize <= 0 {
		spec.PageSize = 1000
	}
	return &scanner{s: s, spec: spec, query: s.pendingQuery(spec)}, nil
}

// scanner pages newest first. A stable scan opens a point in time at the start; a live
// scan runs its first page as a plain search (the common case: a few new alerts, no
// point in time to open and close) and opens one only when that page is full. A sliced
// scan (replicas sharing the work) opens one at the start.
type scanner struct {
	s       *Store
	spec    runner.ScanSpec
	query   map[string]any
	pit     string
	pitAt   time.Time
	after   []json.RawMessage
	n       int
	done    bool
	lastHit *hit
}

func (sc *scanner) sort() []any {
	return []any{
		map[string]any{sc.s.o.TimeField: map[string]any{"order": "desc", "missing": "_last", "unmapped_type": "date"}},
	}
}

// Next implements runner.Scanner. A sliced scan (replicas sharing the work) lists pages
// of pending alerts without their sources, keeps those whose index and _id fall in its
// slice (runner.Slice.Owns), and reads them with a real-time _mget: Elasticsearch's
// own search slices assign whole shards to a slice when a point in time spans several
// indices, which would give one replica every new alert (they are all in the write
// index). Pages without an alert of the slice are skipped.
func (sc *scanner) Next(ctx context.Context) (runner.Page, error) {
	sl := sc.spec.Slice
	if sl.Max <= 1 {
		return sc.next(ctx)
	}
	total, oldest := -1, time.Time{}
	for {
		p, err := sc.next(ctx)
		if err != nil {
			return p, err
		}
		if p.Total >= 0 {
			total, oldest = p.Total, p.Oldest
		}
		p.Total, p.Oldest = total, oldest
		if len(p.Alerts) == 0 {
			return p, nil
		}
		mine := p.Alerts[:0]
		for _, a := range p.Alerts {
			if sl.Owns(a.Index, a.ID) {
				mine = append(mine, a)
			}
		}
		if len(mine) == 0 {
			continue
		}
		if p.Alerts, err = sc.s.Reread(ctx, mine); err != nil {
			return runner.Page{Total: -1}, err
		}
		if len(p.Alerts) == 0 { // all deleted meanwhile
			continue
		}
		return p, nil
	}
}

func (sc *scanner) next(ctx context.Context) (runner.Page, error) {
	page := runner.Page{Total: -1}
	if sc.done {
		return page, nil
	}
	first := sc.n == 0
	sc.n++
	if (sc.spec.Stable || sc.spec.Slice.Max > 1) && sc.pit == "" {
		if err := sc.openPIT(ctx); err != nil || sc.done {
			return page, err
		}
	}
	if sc.pit != "" && time.Since(sc.pitAt) > sc.s.o.PITMaxAge && sc.lastHit != nil {
		// Move to a fresh point in time, resuming at the last page's time.
		if err := sc.reopenAt(ctx); err != nil || sc.done {
			return page, err
		}
	}
	req := map[string]any{
		"size":                sc.spec.PageSize,
		"query":               sc.query,
		"seq_no_primary_term": true,
		"track_total_hits":    first && sc.spec.WantTotal,
	}
	sortSpec := sc.sort()
	if sc.pit != "" {
		req["pit"] = map[string]any{"id": sc.pit, "keep_alive": keepAlive(sc.s.o.PITKeepAlive)}
		sortSpec = append(sortSpec, sc.s.c.pitTiebreaker())
		if sc.after != nil {
			req["search_after"] = sc.after
		}
	}
	if sc.spec.Slice.Max > 1 {
		// Replicas share the work: list the page without sources; Next reads this
		// replica's alerts in real time.
		req["_source"] = false
	}
	req["sort"] = sortSpec
	if first && sc.spec.WantTotal {
		req["aggs"] = map[string]any{"need": map[string]any{"filter": needsEnrichment(sc.spec),
			"aggs": map[string]any{"oldest": map[string]any{"min": map[string]any{"field": sc.s.o.TimeField}}}}}
	}
	res, err := sc.search(ctx, req)
	if err != nil {
		return page, err
	}
	if first && sc.spec.WantTotal {
		page.Total = res.Hits.Total.Value
		if v := res.Aggregations.Need.Oldest.Value; v != nil && !math.IsInf(*v, 0) {
			page.Oldest = time.UnixMilli(int64(*v))
		}
	}
	if res.PitID != "" {
		sc.pit = res.PitID
	}
	hits := res.Hits.Hits
	if len(hits) < sc.spec.PageSize {
		sc.done = true
	} else if sc.pit == "" {
		// A full first page of a live scan: go on in a point in time, from the top (what
		// was just written is recognised as such and skipped).
		if err := sc.openPIT(ctx); err != nil {
			return page, err
		}
	} else {
		sc.after = hits[len(hits)-1].Sort
	}
	if len(hits) > 0 {
		sc.lastHit = &hits[len(hits)-1]
		page.Cursor = cursorOf(sc.lastHit)
	}
	page.Alerts = toAlerts(hits)
	return page, nil
}

// cursorOf reads the time sort value of a hit (Long.MIN_VALUE for a missing time).
func cursorOf(h *hit) runner.Cursor {
	if len(h.Sort) == 0 {
		return runner.Cursor{}
	}
	ms, err := json.Number(h.Sort[0]).Int64()
	if err != nil || ms == math.MinInt64 {
		return runner.Cursor{Missing: true}
	}
	return runner.Cursor{Time: time.UnixMilli(ms)}
}

func (sc *scanner) reopenAt(ctx context.Context) error {
	c := cursorOf(sc.lastHit)
	sc.closePIT(ctx)
	spec := sc.spec
	if c.Missing {
		spec.UntilMissing = true
	} else {
		spec.Until = c.Time
	}
	sc.query = sc.s.pendingQuery(spec)
	sc.after = nil
	return sc.openPIT(ctx)
}

func keepAlive(d time.Duration) string { return fmt.Sprintf("%ds", max(int(d.Seconds()), 1)) }

// openPIT opens a point in time over the alert indices; when they match no index, the
// scan is done (sc.done).
func (sc *scanner) openPIT(ctx context.Context) error {
	id, err := sc.s.c.openPIT(ctx, sc.s.o.Indices, sc.s.o.PITKeepAlive)
	if err != nil {
		return err
	}
	if id == "" {
		sc.done = true
		return nil
	}
	sc.pit, sc.pitAt, sc.after = id, time.Now(), nil
	return nil
}

func (sc *scanner) closePIT(ctx context.Context) {
	if sc.pit == "" {
		return
	}
	// Best effort: a point in time expires by itself.
	sc.s.c.closePIT(context.WithoutCancel(ctx), sc.pit)
	sc.pit = ""
}

func (sc *scanner) Close(ctx context.Context) { sc.closePIT(ctx) }

func (sc *scanner) search(ctx context.Context, req map[string]any) (*searchResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	path, q := "/_search", url.Values(nil)
	if sc.pit == "" {
		path = "/" + joinIndices(sc.s.o.Indices) + "/_search"
		q = hiddenToo()
	}
	code, body, err := sc.s.c.Do(ctx, "search", http.MethodPost, path, q, b)
	if err != nil {
		return nil, fmt.Errorf("search alerts: %w", err)
	}
	if code != http.StatusOK {
		return nil, statusError("search alerts in "+joinIndices(sc.s.o.Indices), code, body)
	}
	var res searchResponse
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode search response: %w", err)
	}
	return &res, nil
}

func toAlerts(hits []hit) []*enrich.Alert {
	alerts := make([]*enrich.Alert, 0, len(hits))
	for _, h := range hits {
		a := &enrich.Alert{ID: h.ID, Index: h.Index, Raw: []byte(h.Source)}
		if h.SeqNo != nil && h.PrimaryTerm != nil {
			a.SeqNo, a.PrimaryTerm = *h.SeqNo, *h.PrimaryTerm
		}
		alerts = append(alerts, a)
	}
	return alerts
}

// Reread implements runner.Store with a real-time _mget.
func (s *Store) Reread(ctx context.Context, alerts []*enrich.Alert) ([]*enrich.Alert, error) {
	docs := make([]map[string]any, len(alerts))
	for i, a := range alerts {
		docs[i] = map[string]any{"_index": a.Index, "_id": a.ID}
	}
	b, err := json.Marshal(map[string]any{"docs": docs})
	if err != nil {
		return nil, err
	}
	q := url.Values{"realtime": {"true"}}
	code, body, err := s.c.Do(ctx, "mget", http.MethodPost, "/_mget", q, b)
	if err != nil {
		return nil, fmt.Errorf("re-read alerts: %w", err)
	}
	if code != http.StatusOK {
		return nil, statusError("re-read alerts", code, body)
	}
	var res struct {
		Docs []struct {
			hit
			Found bool `json:"found"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode mget response: %w", err)
	}
	hits := make([]hit, 0, len(res.Docs))
	for _, d := range res.Docs {
		if d.Found {
			hits = append(hits, d.hit)
		}
	}
	return toAlerts(hits), nil
}

// CountQuarantined counts the alerts quarantined by generation g or a newer one.
func (s *Store) CountQuarantined(ctx context.Context, root string, g enrich.Generation) (int, error) {
	b, _ := json.Marshal(map[string]any{"query": map[string]any{"range": map[string]any{
		enrich.Under(root, enrich.FieldQuarantineGeneration): map[string]any{"gte": g.Number}}}})
	code, body, err := s.c.Do(ctx, "search", http.MethodPost, "/"+joinIndices(s.o.Indices)+"/_count", hiddenToo(), b)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, statusError("count quarantined alerts", code, body)
	}
	var res struct {
		Count int `json:"count"`
	}
	err = json.Unmarshal(body, &res)
	return res.Count, err
}
