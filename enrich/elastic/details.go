package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// DetailVersionsKept is how many rulesets' details the detail index keeps: the newest
// ones published. An alert enriched by an older ruleset is enriched again by the
// backfill (its generation is not the newest), so its references go stale only for
// the time the backfill takes; daemons still running a ruleset whose details were
// removed publish them again on their next load.
const DetailVersionsKept = 3

// Details publishes the mapping detail index: one document per mapping of a ruleset,
// written with create-only operations under _ids derived from the ruleset's hash and
// the document, so that publishing twice, or from several replicas at once, changes
// nothing. A marker in the state index (details-<hash>) records a complete publication,
// so a restart does not write again.
type Details struct {
	c     *Client
	index string
	state *State
	log   *slog.Logger
	now   func() time.Time

	made bool
}

var _ runner.DetailPublisher = (*Details)(nil)

// NewDetails returns the publisher of the detail index (config.DefaultDetailsIndex
// when index is empty) with its markers in state.
func NewDetails(c *Client, index string, state *State, log *slog.Logger) *Details {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Details{c: c, index: index, state: state, log: log, now: time.Now}
}

// PublishDetails implements runner.DetailPublisher.
func (d *Details) PublishDetails(ctx context.Context, src enrich.DetailSource) error {
	res, err := d.Publish(ctx, src)
	hash, _ := src.DetailVersion()
	if err == nil && !res.Skipped {
		d.log.Info("mapping details published", "index", d.index, "rules", hash[:min(12, len(hash))],
			"written", res.Written, "existing", res.Existing, "removed_versions", res.Removed)
	}
	return err
}

// Index returns the detail index's name.
func (d *Details) Index() string { return d.index }

// DetailsMapping is the detail index's mapping, made from enrich.DetailSchema.
func DetailsMapping() map[string]any { return schemaMapping(enrich.DetailSchema) }

// Ensure creates the detail index when it does not exist (`enricher setup` does; a
// daemon with the least-privilege role cannot).
func (d *Details) Ensure(ctx context.Context) error {
	if d.made {
		return nil
	}
	code, body, err := d.c.Do(ctx, "details", http.MethodGet, "/"+url.PathEscape(d.index)+"/_mapping", nil, nil)
	if err != nil {
		return fmt.Errorf("check detail index %s: %w", d.index, err)
	}
	if code == http.StatusNotFound {
		b, _ := json.Marshal(map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "auto_expand_replicas": "0-1"},
			"mappings": DetailsMapping(),
		})
		code, body, err = d.c.Do(ctx, "details", http.MethodPut, "/"+url.PathEscape(d.index), nil, b)
		if err != nil {
			return fmt.Errorf("create detail index %s: %w", d.index, err)
		}
		if code != http.StatusOK && !(code == http.StatusBadRequest && containsType(body, "resource_already_exists_exception")) {
			return statusError("create detail index "+d.index+" (`enricher setup` creates it)", code, body)
		}
	} else if code != http.StatusOK {
		return statusError("check detail index "+d.index, code, body)
	}
	d.made = true
	return nil
}

// detailsMarker is the value of a details-<hash> state document.
type detailsMarker struct {
	Index     string `json:"index"`
	Documents int    `json:"documents"`
	State     string `json:"state"` // complete or removing
}

// PublishResult says what one publication did.
type PublishResult struct {
	Written  int // documents created
	Existing int // documents found there already
	Removed  int // rulesets whose details were removed
	Skipped  bool
}

// Publish writes src's details unless a complete publication is recorded, then removes
// the details of rulesets older than the newest DetailVersionsKept.
func (d *Details) Publish(ctx context.Context, src enrich.DetailSource) (PublishResult, error) {
	var res PublishResult
	if err := d.state.Ensure(ctx); err != nil {
		return res, err
	}
	if err := d.Ensure(ctx); err != nil {
		return res, err
	}
	hash, version := src.DetailVersion()
	id := "details-" + hash
	prev, err := d.state.get(ctx, id)
	if err != nil {
		return res, err
	}
	if m := markerOf(prev); m != nil && m.State == "complete" && m.Index == d.index {
		res.Skipped = true
	} else {
		w := &detailWriter{d: d}
		if err := src.EachDetail(func(id string, doc []byte) error { return w.add(ctx, id, doc) }); err != nil {
			return res, err
		}
		if err := w.flush(ctx); err != nil {
			return res, err
		}
		res.Written, res.Existing = w.created, w.existing
		v, _ := json.Marshal(detailsMarker{Index: d.index, Documents: w.created + w.existing, State: "complete"})
		if err := d.state.put(ctx, id, stateDoc{Type: "details", Hash: hash, RulesVersion: version,
			EnricherVersion: d.state.version, Updated: d.now().UTC(), Value: v}, false); err != nil {
			return res, err
		}
	}
	n, err := d.cleanup(ctx, hash)
	res.Removed = n
	return res, err
}

func markerOf(sd *stateDoc) *detailsMarker {
	if sd == nil {
		return nil
	}
	var m detailsMarker
	if json.Unmarshal(sd.Value, &m) != nil {
		return nil
	}
	return &m
}

// detailWriter sends create-only bulk requests of bounded size.
type detailWriter struct {
	d                 *Details
	buf               bytes.Buffer
	n                 int
	created, existing int
}

const (
	detailBulkDocs  = 500
	detailBulkBytes = 4 << 20
)

func (w *detailWriter) add(ctx context.Context, id string, doc []byte) error {
	w.buf.WriteString(`{"create":{"_index":`)
	writeJSONString(&w.buf, w.d.index)
	w.buf.WriteString(`,"_id":`)
	writeJSONString(&w.buf, id)
	w.buf.WriteString("}}\n")
	w.buf.Write(doc)
	w.buf.WriteByte('\n')
	w.n++
	if w.n >= detailBulkDocs || w.buf.Len() >= detailBulkBytes {
		return w.flush(ctx)
	}
	return nil
}

func (w *detailWriter) flush(ctx context.Context) error {
	if w.n == 0 {
		return nil
	}
	n := w.n
	code, body, err := w.d.c.Do(ctx, "details", http.MethodPost, "/_bulk", nil, w.buf.Bytes())
	w.buf.Reset()
	w.n = 0
	if err != nil {
		return fmt.Errorf("write mapping details to %s: %w", w.d.index, err)
	}
	if code != http.StatusOK {
		return statusError("write mapping details to "+w.d.index, code, body)
	}
	results, err := parseBulk(body, n)
	if err != nil {
		return fmt.Errorf("write mapping details to %s: %w: %w", w.d.index, ErrUnavailable, err)
	}
	for _, r := range results {
		switch {
		case r.Code == http.StatusCreated || r.Code == http.StatusOK:
			w.created++
		case r.Code == http.StatusConflict:
			w.existing++
		case r.Code == http.StatusTooManyRequests || r.Code >= 500:
			return fmt.Errorf("write mapping details to %s: %w: item status %d: %s", w.d.index, ErrUnavailable, r.Code, r.Reason)
		default:
			return fmt.Errorf("write mapping details to %s: %w: item status %d: %s", w.d.index, ErrRefused, r.Code, r.Reason)
		}
	}
	return nil
}

// cleanup removes the details of rulesets older than the newest DetailVersionsKept
// publications (never keep's own). It returns how many rulesets it removed.
func (d *Details) cleanup(ctx context.Context, keep string) (int, error) {
	q, _ := json.Marshal(map[string]any{
		"size": 100, "query": map[string]any{"term": map[string]any{"type": "details"}},
		"sort": []any{map[string]any{"updated": "desc"}}, "_source": []string{"hash", "value"},
	})
	code, body, err := d.c.Do(ctx, "details", http.MethodPost, "/"+url.PathEscape(d.state.index)+"/_search", nil, q)
	if err != nil {
		return 0, fmt.Errorf("list mapping detail versions: %w", err)
	}
	if code != http.StatusOK {
		return 0, statusError("list mapping detail versions", code, body)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source stateDoc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return 0, fmt.Errorf("list mapping detail versions: %w: %w", ErrUnavailable, err)
	}
	removed, kept := 0, 0
	for _, h := range res.Hits.Hits {
		sd := h.Source
		m := markerOf(&sd)
		if sd.Hash == keep || (m != nil && m.State == "complete" && kept < DetailVersionsKept-1) {
			if sd.Hash != keep {
				kept++
			}
			continue
		}
		if err := d.remove(ctx, sd); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// remove deletes one ruleset's details: its marker says "removing" first, so that a
// daemon loading that ruleset meanwhile writes them again rather than trusting it.
func (d *Details) remove(ctx context.Context, sd stateDoc) error {
	id := "details-" + sd.Hash
	m := markerOf(&sd)
	if m == nil {
		m = &detailsMarker{Index: d.index}
	}
	m.State = "removing"
	sd.Value, _ = json.Marshal(m)
	if err := d.state.put(ctx, id, sd, false); err != nil {
		return err
	}
	index := m.Index
	if index == "" {
		index = d.index
	}
	// Each round deletes what one search finds and waits for the deletes to be visible,
	// so the rounds end; the bound stops a round that keeps finding documents (another
	// daemon writing that ruleset again) from going on.
	for round := 0; round < 1000; round++ {
		q, _ := json.Marshal(map[string]any{"size": 1000, "_source": false,
			"query": map[string]any{"term": map[string]any{"ruleset.hash": sd.Hash}}})
		code, body, err := d.c.Do(ctx, "details", http.MethodPost, "/"+url.PathEscape(index)+"/_search", nil, q)
		if err != nil {
			return fmt.Errorf("find old mapping details: %w", err)
		}
		if code == http.StatusNotFound {
			break
		}
		if code != http.StatusOK {
			return statusError("find old mapping details in "+index, code, body)
		}
		var res struct {
			Hits struct {
				Hits []struct {
					ID string `json:"_id"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("find old mapping details: %w: %w", ErrUnavailable, err)
		}
		if len(res.Hits.Hits) == 0 {
			break
		}
		var buf bytes.Buffer
		for _, h := range res.Hits.Hits {
			buf.WriteString(`{"delete":{"_index":`)
			writeJSONString(&buf, index)
			buf.WriteString(`,"_id":`)
			writeJSONString(&buf, h.ID)
			buf.WriteString("}}\n")
		}
		code, body, err = d.c.Do(ctx, "details", http.MethodPost, "/_bulk", url.Values{"refresh": {"wait_for"}}, buf.Bytes())
		if err != nil {
			return fmt.Errorf("delete old mapping details: %w", err)
		}
		if code != http.StatusOK {
			return statusError("delete old mapping details from "+index, code, body)
		}
	}
	code, body, err := d.c.Do(ctx, "details", http.MethodDelete, "/"+url.PathEscape(d.state.index)+"/_doc/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", d.state.index, id, err)
	}
	if code != http.StatusOK && code != http.StatusNotFound {
		return statusError("delete "+d.state.index+"/"+id, code, body)
	}
	return nil
}
