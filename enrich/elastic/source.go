package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/enricher-dev/enricher/enrich"
)

// Query selects the alerts that need enrichment.
type Query struct {
	Indices []string
	// TechniqueFields: an alert qualifies when any of these holds a value.
	TechniqueFields []enrich.Field
	// Root and Hash: an alert is done when <Root>.ruleset.hash equals Hash and no stage
	// is pending.
	Root, Hash string
	// Extra is an optional query that further limits alerts.
	Extra map[string]any
	// SourceFields are the _source fields to fetch.
	SourceFields []string
	// DocValueFields are fields read from doc values instead of _source: keyword fields
	// mapped as such in every index. Cheaper for Elasticsearch than loading _source; their
	// values land in Alert.Source under the dotted field name.
	DocValueFields []string
	BatchSize      int
}

// Body returns the Elasticsearch query for pending alerts.
func (q Query) Body() map[string]any {
	var carries []any
	for _, f := range q.TechniqueFields {
		if f.Kind == enrich.FieldTag {
			carries = append(carries, map[string]any{"prefix": map[string]any{
				f.Path: map[string]any{"value": "attack.t", "case_insensitive": true}}})
			continue
		}
		carries = append(carries, map[string]any{"exists": map[string]any{"field": f.Path}})
	}
	filter := []any{map[string]any{"bool": map[string]any{"should": carries, "minimum_should_match": 1}}}
	if len(q.Extra) > 0 {
		filter = append(filter, q.Extra)
	}
	return map[string]any{"bool": map[string]any{
		"filter": filter,
		"should": []any{
			map[string]any{"bool": map[string]any{"must_not": map[string]any{
				"term": map[string]any{q.Root + ".ruleset.hash": q.Hash}}}},
			map[string]any{"exists": map[string]any{"field": q.Root + "." + enrich.PendingField}},
		},
		"minimum_should_match": 1,
	}}
}

// PassStats describe one pass over the pending alerts.
type PassStats struct {
	Pending int       // pending alerts when the pass started
	Oldest  time.Time // @timestamp of the oldest pending alert; zero if unknown
	Batches int
}

type hit struct {
	Index       string           `json:"_index"`
	ID          string           `json:"_id"`
	SeqNo       *int64           `json:"_seq_no"`
	PrimaryTerm *int64           `json:"_primary_term"`
	Source      json.RawMessage  `json:"_source"`
	Fields      map[string][]any `json:"fields"`
	Sort        []any            `json:"sort"`
}

// sourceFilter fetches only the given _source fields, or no _source at all.
func sourceFilter(fields []string) any {
	if len(fields) == 0 {
		return false
	}
	return map[string]any{"includes": fields}
}

// Scan opens a point in time over the pending alerts and calls fn with each page, in
// order, until all are seen. fn's error stops the scan and is returned.
func (c *Client) Scan(ctx context.Context, q Query, fn func(context.Context, []*enrich.Alert) error) (PassStats, error) {
	var st PassStats
	pq := hiddenToo()
	pq.Set("keep_alive", "2m")
	code, body, err := c.Do(ctx, "pit_open", http.MethodPost, "/"+joinIndices(q.Indices)+"/_pit", pq, nil)
	if err != nil {
		return st, fmt.Errorf("open point in time: %w", err)
	}
	if code != http.StatusOK {
		return st, statusError("open point in time", code, body)
	}
	var pit struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &pit); err != nil {
		return st, fmt.Errorf("decode point in time: %w", err)
	}
	defer func() {
		b, _ := json.Marshal(map[string]string{"id": pit.ID})
		// Closing is best effort; the PIT expires by itself.
		_, _, _ = c.Do(context.WithoutCancel(ctx), "pit_close", http.MethodDelete, "/_pit", nil, b)
	}()

	size := q.BatchSize
	if size <= 0 {
		size = 500
	}
	query := q.Body()
	fetch := func(after []any, first bool) (searchPage, error) {
		req := map[string]any{
			"size":                size,
			"query":               query,
			"pit":                 map[string]any{"id": pit.ID, "keep_alive": "2m"},
			"sort":                []any{map[string]any{"_shard_doc": "asc"}},
			"seq_no_primary_term": true,
			"_source":             sourceFilter(q.SourceFields),
			"track_total_hits":    first,
		}
		if first {
			req["aggs"] = map[string]any{"oldest": map[string]any{"min": map[string]any{"field": "@timestamp"}}}
		}
		if after != nil {
			req["search_after"] = after
		}
		if len(q.DocValueFields) > 0 {
			req["docvalue_fields"] = q.DocValueFields
		}
		return c.searchPage(ctx, req)
	}
	// The next page is fetched while fn works on the current one, so searching costs
	// (almost) no time beside the bulk writes.
	type result struct {
		page searchPage
		err  error
	}
	page, err := fetch(nil, true)
	for {
		if err != nil {
			return st, err
		}
		if page.pitID != "" {
			pit.ID = page.pitID
		}
		if st.Batches == 0 {
			st.Pending = page.total
			st.Oldest = page.oldest
		}
		if len(page.hits) == 0 {
			return st, nil
		}
		var next chan result
		if len(page.hits) == size {
			next = make(chan result, 1)
			after := page.hits[len(page.hits)-1].Sort
			go func() {
				p, err := fetch(after, false)
				next <- result{p, err}
			}()
		}
		alerts, err := toAlerts(page.hits)
		if err != nil {
			return st, err
		}
		st.Batches++
		if err := fn(ctx, alerts); err != nil {
			if next != nil {
				<-next
			}
			return st, err
		}
		if next == nil {
			return st, nil
		}
		r := <-next
		page, err = r.page, r.err
	}
}

type searchPage struct {
	pitID  string
	total  int
	oldest time.Time
	hits   []hit
}

func (c *Client) searchPage(ctx context.Context, req map[string]any) (searchPage, error) {
	var p searchPage
	b, err := json.Marshal(req)
	if err != nil {
		return p, err
	}
	code, body, err := c.Do(ctx, "search", http.MethodPost, "/_search", nil, b)
	if err != nil {
		return p, fmt.Errorf("search pending alerts: %w", err)
	}
	if code != http.StatusOK {
		return p, statusError("search pending alerts", code, body)
	}
	var res struct {
		PitID string `json:"pit_id"`
		Hits  struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []hit `json:"hits"`
		} `json:"hits"`
		Aggregations struct {
			Oldest struct {
				Value *float64 `json:"value"`
			} `json:"oldest"`
		} `json:"aggregations"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return p, fmt.Errorf("decode search response: %w", err)
	}
	p.pitID, p.total, p.hits = res.PitID, res.Hits.Total.Value, res.Hits.Hits
	if v := res.Aggregations.Oldest.Value; v != nil {
		p.oldest = time.UnixMilli(int64(*v))
	}
	return p, nil
}

func toAlerts(hits []hit) ([]*enrich.Alert, error) {
	alerts := make([]*enrich.Alert, 0, len(hits))
	for _, h := range hits {
		a := &enrich.Alert{ID: h.ID, Index: h.Index}
		if h.SeqNo != nil && h.PrimaryTerm != nil {
			a.SeqNo, a.PrimaryTerm = *h.SeqNo, *h.PrimaryTerm
		}
		if len(h.Source) > 0 {
			if err := json.Unmarshal(h.Source, &a.Source); err != nil {
				return nil, fmt.Errorf("decode _source of %s/%s: %w", h.Index, h.ID, err)
			}
		}
		if a.Source == nil {
			a.Source = make(map[string]any, len(h.Fields))
		}
		for f, vs := range h.Fields {
			a.Source[f] = vs
		}
		alerts = append(alerts, a)
	}
	return alerts, nil
}

// Mget re-reads alerts (their current _source fields, seq_no and primary term).
// Alerts that no longer exist are left out.
func (c *Client) Mget(ctx context.Context, alerts []*enrich.Alert, fields []string) ([]*enrich.Alert, error) {
	docs := make([]map[string]any, len(alerts))
	for i, a := range alerts {
		docs[i] = map[string]any{"_index": a.Index, "_id": a.ID, "_source": sourceFilter(fields)}
	}
	b, err := json.Marshal(map[string]any{"docs": docs})
	if err != nil {
		return nil, err
	}
	code, body, err := c.Do(ctx, "mget", http.MethodPost, "/_mget", url.Values{"realtime": {"true"}}, b)
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
	return toAlerts(hits)
}

// Refresh makes recent writes visible to search on the given index patterns.
func (c *Client) Refresh(ctx context.Context, indices []string) error {
	code, body, err := c.Do(ctx, "refresh", http.MethodPost, "/"+joinIndices(indices)+"/_refresh", hiddenToo(), nil)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	if code != http.StatusOK {
		return statusError("refresh", code, body)
	}
	return nil
}

// FieldPlan says where to read each technique field from.
type FieldPlan struct {
	// DocValues are mapped as keyword in every index: read from doc values.
	DocValues []string
	// Unmapped are mapped in no index: no query can select alerts by them, so they are
	// not read at all (this spares Elasticsearch from loading _source).
	Unmapped []string
	// Source are the rest (mapped differently across indices, or only in some): _source.
	Source []string
}

// PlanFields asks Elasticsearch (field capabilities) how every index matching the patterns
// maps the given fields, and plans where to read each from.
func (c *Client) PlanFields(ctx context.Context, indices, fields []string) (FieldPlan, error) {
	var plan FieldPlan
	if len(fields) == 0 {
		return plan, nil
	}
	q := hiddenToo()
	q.Set("fields", strings.Join(fields, ","))
	q.Set("include_unmapped", "true")
	code, body, err := c.Do(ctx, "mapping", http.MethodGet, "/"+joinIndices(indices)+"/_field_caps", q, nil)
	if err != nil {
		return plan, fmt.Errorf("field capabilities: %w", err)
	}
	if code != http.StatusOK {
		return plan, statusError("field capabilities", code, body)
	}
	var res struct {
		Indices []string                              `json:"indices"`
		Fields  map[string]map[string]json.RawMessage `json:"fields"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return plan, fmt.Errorf("decode field capabilities: %w", err)
	}
	for _, f := range fields {
		types := res.Fields[f]
		_, keyword := types["keyword"]
		_, unmapped := types["unmapped"]
		switch {
		case keyword && len(types) == 1:
			plan.DocValues = append(plan.DocValues, f)
		case len(res.Indices) > 0 && (len(types) == 0 || unmapped && len(types) == 1):
			plan.Unmapped = append(plan.Unmapped, f)
		default:
			plan.Source = append(plan.Source, f)
		}
	}
	return plan, nil
}
