package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// DetailVersionsKept is how many rulesets' details the detail index keeps at least: the
// most recently used ones. Details of a ruleset beyond them are removed once no daemon
// has used it for DetailGrace: a daemon renews its ruleset's use every
// runner.DetailsHeartbeat (well within the grace), so a ruleset that runs somewhere is
// never removed.
const DetailVersionsKept = 3

// DetailGrace: see DetailVersionsKept.
const DetailGrace = 24 * time.Hour

// Details publishes the mapping detail index: one document per mapping of a ruleset,
// written with create-only operations under _ids derived from the ruleset's hash and the
// mapping's identity, so that publishing twice, or from several replicas at once, creates
// each document once. A marker in the state index (details-<format>-<hash>) records a
// complete publication and when the ruleset was last used; every change of a marker is
// conditional on the version read (if_seq_no), so a publisher and a remover never both
// win.
type Details struct {
	c     *Client
	index string
	state *State
	log   *slog.Logger
	now   func() time.Time
	// Grace: see DetailGrace (tests shorten it).
	Grace time.Duration

	mu   sync.Mutex // one publication at a time
	made bool
}

var _ runner.DetailPublisher = (*Details)(nil)

// NewDetails returns the publisher of the detail index (config.DefaultDetailsIndex
// when index is empty) with its markers in state.
func NewDetails(c *Client, index string, state *State, log *slog.Logger) *Details {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Details{c: c, index: index, state: state, log: log, now: time.Now, Grace: DetailGrace}
}

// Index returns the detail index's name.
func (d *Details) Index() string { return d.index }

// PublishDetails implements runner.DetailPublisher. Failing to remove old rulesets'
// details is logged, not returned: the new ruleset's are published.
func (d *Details) PublishDetails(ctx context.Context, src enrich.DetailSource) error {
	res, err := d.Publish(ctx, src)
	hash, _ := src.DetailVersion()
	if err != nil {
		return err
	}
	if !res.Skipped {
		d.log.Info("mapping details published", "index", d.index, "rules", hash[:min(12, len(hash))],
			"written", res.Written, "existing", res.Existing)
	}
	if res.Removed > 0 {
		d.log.Info("mapping details of unused rulesets removed", "index", d.index, "rulesets", res.Removed)
	}
	if res.CleanupErr != nil {
		d.log.Warn("mapping details of unused rulesets not removed; tried again at the next publication", "err", res.CleanupErr)
	}
	return nil
}

// DetailsMapping is the detail index's mapping, made from enrich.DetailSchema.
func DetailsMapping() map[string]any { return schemaMapping(enrich.DetailSchema) }

// Ensure creates the detail index when it does not exist (`enricher setup` does; a
// daemon with the least-privilege role cannot).
func (d *Details) Ensure(ctx context.Context) error {
	if d.made {
		return nil
	}
	settings := map[string]any{"number_of_shards": 1, "auto_expand_replicas": "0-1"}
	existing, err := ensureIndex(ctx, d.c, "details", "detail index", d.index, " (`enricher setup` creates it)", settings, DetailsMapping())
	if err != nil {
		return err
	}
	if existing != nil {
		if err := d.addFields(ctx, existing); err != nil {
			return err
		}
	}
	d.made = true
	return nil
}

// addFields puts the fields of DetailsMapping that an existing detail index lacks (made
// by an older enricher).
func (d *Details) addFields(ctx context.Context, mappingBody []byte) error {
	var res map[string]struct {
		Mappings map[string]any `json:"mappings"`
	}
	if err := json.Unmarshal(mappingBody, &res); err != nil {
		return fmt.Errorf("check detail index %s: %w: %w", d.index, ErrRefused, err)
	}
	have, want := map[string]string{}, map[string]string{}
	for _, ix := range res {
		leafTypes("", ix.Mappings, have)
	}
	leafTypes("", DetailsMapping(), want)
	for f := range want {
		if _, ok := have[f]; !ok {
			b, _ := json.Marshal(DetailsMapping())
			code, body, err := d.c.Do(ctx, "details", http.MethodPut, "/"+url.PathEscape(d.index)+"/_mapping", nil, b)
			if err != nil {
				return fmt.Errorf("map new fields of detail index %s: %w", d.index, err)
			}
			if code != http.StatusOK {
				return statusError("map new fields of detail index "+d.index+" (`enricher setup` does it)", code, body)
			}
			return nil
		}
	}
	return nil
}

// detailsMarker is the value of a details marker in the state index.
type detailsMarker struct {
	Index     string `json:"index"`
	Documents int    `json:"documents"`
	State     string `json:"state"`  // complete or removing
	Format    string `json:"format"` // enrich.DetailFormat of the documents; "" before formats
}

const (
	markerComplete = "complete"
	markerRemoving = "removing"
)

func markerID(hash string) string { return "details-" + enrich.DetailFormat + "-" + hash }

// PublishResult says what one publication did.
type PublishResult struct {
	Written    int  // documents created
	Existing   int  // documents found there already
	Skipped    bool // a complete publication was there: only its use was renewed
	Removed    int  // unused rulesets whose details were removed
	CleanupErr error
}

// marker is a marker document and the version it was read at.
type marker struct {
	doc stateDoc
	m   detailsMarker
	at  docVersion
}

// Publish writes src's details unless a complete publication with all its documents is
// recorded (then it renews the ruleset's use), then removes the details of unused
// rulesets (see DetailVersionsKept).
func (d *Details) Publish(ctx context.Context, src enrich.DetailSource) (PublishResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var res PublishResult
	if err := d.state.Ensure(ctx); err != nil {
		return res, err
	}
	if err := d.Ensure(ctx); err != nil {
		return res, err
	}
	hash, version := src.DetailVersion()
	id := markerID(hash)
	done := false
	for attempt := 0; attempt < 3 && !done; attempt++ {
		mk, err := d.getMarker(ctx, id)
		if err != nil {
			return res, err
		}
		if mk != nil && mk.m.Format != enrich.DetailFormat && olderFormat(mk.m.Format) {
			// Written in an older format under this marker: those documents go first.
			if err := d.remove(ctx, id, mk); err != nil {
				return res, err
			}
			continue
		}
		if mk != nil && mk.m.State == markerComplete && mk.m.Index == d.index {
			n, err := d.count(ctx, hash)
			if err != nil {
				return res, err
			}
			if n >= mk.m.Documents {
				mk.doc.Updated = d.now().UTC()
				if err := d.putMarker(ctx, id, mk.doc, mk); errors.Is(err, errChanged) {
					continue
				} else if err != nil {
					return res, err
				}
				res.Skipped, done = true, true
				break
			}
		}
		w := &detailWriter{d: d}
		if err := src.EachDetail(func(id string, doc []byte) error { return w.add(ctx, id, doc) }); err != nil {
			return res, err
		}
		if err := w.flush(ctx, true); err != nil {
			return res, err
		}
		res.Written, res.Existing = w.created, w.existing
		v, _ := json.Marshal(detailsMarker{Index: d.index, Documents: w.created + w.existing, State: markerComplete, Format: enrich.DetailFormat})
		doc := stateDoc{Type: "details", Hash: hash, RulesVersion: version, EnricherVersion: d.state.version,
			Updated: d.now().UTC(), Value: v}
		if err := d.putMarker(ctx, id, doc, mk); errors.Is(err, errChanged) {
			continue
		} else if err != nil {
			return res, err
		}
		// A remover that started before our marker may have deleted documents we found
		// there: count them (the last bulk waited for a refresh).
		n, err := d.count(ctx, hash)
		if err != nil {
			return res, err
		}
		done = n >= w.created+w.existing
	}
	if !done {
		return res, fmt.Errorf("publish mapping details of %s: %w: they kept changing while written (another enricher removing them?)",
			hash[:min(12, len(hash))], ErrUnavailable)
	}
	res.Removed, res.CleanupErr = d.cleanup(ctx, hash)
	return res, nil
}

// getMarker reads a marker with its version; nil when there is none.
func (d *Details) getMarker(ctx context.Context, id string) (*marker, error) {
	doc, at, err := d.state.getVersioned(ctx, id)
	if err != nil || doc == nil {
		return nil, err
	}
	mk := &marker{doc: *doc, at: at}
	json.Unmarshal(doc.Value, &mk.m) // a marker that does not decode is one to replace
	return mk, nil
}

// putMarker writes a marker: over prev's version when prev is not nil, as a new document
// otherwise; errChanged when another writer came first. It returns the new version in prev.
func (d *Details) putMarker(ctx context.Context, id string, doc stateDoc, prev *marker) error {
	if prev == nil {
		_, err := d.state.write(ctx, id, doc, true, nil)
		return err
	}
	at, err := d.state.write(ctx, id, doc, false, &prev.at)
	if err == nil {
		prev.at = at
	}
	return err
}

// count returns how many documents of a ruleset the detail index holds (searchable ones).
func (d *Details) count(ctx context.Context, hash string) (int, error) {
	q, _ := json.Marshal(map[string]any{"query": detailsOf(hash, enrich.DetailFormat)})
	code, body, err := d.c.Do(ctx, "details", http.MethodPost, "/"+url.PathEscape(d.index)+"/_count", nil, q)
	if err != nil {
		return 0, fmt.Errorf("count mapping details: %w", err)
	}
	if code == http.StatusNotFound {
		return 0, nil
	}
	if code != http.StatusOK {
		return 0, statusError("count mapping details in "+d.index, code, body)
	}
	var r struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("count mapping details: %w: %w", ErrUnavailable, err)
	}
	return r.Count, nil
}

// olderFormat says whether documents of format f are older than enrich.DetailFormat
// ("" is the oldest: written before formats).
func olderFormat(f string) bool {
	n, err := strconv.Atoi(f)
	if f == "" {
		n, err = 0, nil
	}
	cur, _ := strconv.Atoi(enrich.DetailFormat)
	return err == nil && n < cur
}

// detailsOf selects the documents of one ruleset in one format ("": documents written
// before formats, which have no format field).
func detailsOf(hash, format string) map[string]any {
	f := map[string]any{"term": map[string]any{"format": format}}
	b := map[string]any{"filter": []any{map[string]any{"term": map[string]any{"ruleset.hash": hash}}}}
	if format == "" {
		b["must_not"] = []any{map[string]any{"exists": map[string]any{"field": "format"}}}
	} else {
		b["filter"] = append(b["filter"].([]any), f)
	}
	return map[string]any{"bool": b}
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
		return w.flush(ctx, false)
	}
	return nil
}

// flush sends what is buffered; last waits for a refresh, so the publication is
// searchable (and countable) when it returns.
func (w *detailWriter) flush(ctx context.Context, last bool) error {
	if w.n == 0 {
		return nil
	}
	var q url.Values
	if last {
		q = url.Values{"refresh": {"wait_for"}}
	}
	c, e, err := bulkItems(ctx, w.d.c, w.buf.Bytes(), w.n, q, "write mapping details to "+w.d.index)
	w.buf.Reset()
	w.n = 0
	w.created += c
	w.existing += e
	return err
}

// bulkItems sends a bulk request of n create or delete items and sorts their results:
// done (201, 200), already so (409 for a create, 404 for a delete); a 429 or 5xx item
// is ErrUnavailable, any other ErrRefused. A response that does not parse is refused:
// sending the same request again would not make it parse.
func bulkItems(ctx context.Context, c *Client, body []byte, n int, q url.Values, what string) (done, already int, err error) {
	code, resp, err := c.Do(ctx, "details", http.MethodPost, "/_bulk", q, body)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", what, err)
	}
	if code != http.StatusOK {
		return 0, 0, statusError(what, code, resp)
	}
	results, err := parseBulk(resp, n)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w: %w", what, ErrRefused, err)
	}
	for _, r := range results {
		switch {
		case r.Code == http.StatusCreated || r.Code == http.StatusOK:
			done++
		case r.Code == http.StatusConflict || r.Code == http.StatusNotFound:
			already++
		case r.Code == http.StatusTooManyRequests || r.Code >= 500:
			return done, already, fmt.Errorf("%s: %w: item status %d: %s", what, ErrUnavailable, r.Code, r.Reason)
		default:
			return done, already, fmt.Errorf("%s: %w: item status %d: %s", what, ErrRefused, r.Code, r.Reason)
		}
	}
	return done, already, nil
}

// cleanup removes the details of rulesets that are neither among the DetailVersionsKept
// most recently used (keep's own counts) nor used within Grace. It returns how many
// rulesets it removed.
func (d *Details) cleanup(ctx context.Context, keep string) (int, error) {
	q, _ := json.Marshal(map[string]any{
		"size": 100, "seq_no_primary_term": true, "query": map[string]any{"term": map[string]any{"type": "details"}},
		"sort": []any{map[string]any{"updated": "desc"}},
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
				ID     string   `json:"_id"`
				Seq    int64    `json:"_seq_no"`
				Term   int64    `json:"_primary_term"`
				Source stateDoc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return 0, fmt.Errorf("list mapping detail versions: %w: %w", ErrRefused, err)
	}
	removed, kept := 0, 1 // keep's own
	now := d.now()
	for _, h := range res.Hits.Hits {
		mk := &marker{doc: h.Source, at: docVersion{h.Seq, h.Term}}
		json.Unmarshal(h.Source.Value, &mk.m)
		if h.Source.Hash == keep {
			// The same ruleset in an older format is replaced; a newer format's (a newer
			// enricher beside this one) follows the rules of any other ruleset below.
			if h.ID != markerID(keep) && olderFormat(mk.m.Format) {
				if err := d.remove(ctx, h.ID, mk); err != nil {
					return removed, err
				}
			}
			if h.ID == markerID(keep) || olderFormat(mk.m.Format) {
				continue
			}
		}
		if mk.m.State == markerComplete && (kept < DetailVersionsKept || now.Sub(h.Source.Updated) < d.Grace) {
			kept++
			continue
		}
		if err := d.remove(ctx, h.ID, mk); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// remove deletes one ruleset's details. Its marker says "removing" first, and the
// removal stops when the marker changes (a daemon publishing that ruleset again).
func (d *Details) remove(ctx context.Context, id string, mk *marker) error {
	mk.m.State = markerRemoving
	if mk.m.Index == "" {
		mk.m.Index = d.index
	}
	mk.doc.Value, _ = json.Marshal(mk.m)
	if err := d.putMarker(ctx, id, mk.doc, mk); errors.Is(err, errChanged) {
		return nil // used or removed meanwhile: not ours to remove
	} else if err != nil {
		return err
	}
	index, hash, format := mk.m.Index, mk.doc.Hash, mk.m.Format
	emptied := false
	// Each round deletes what one search finds and waits for the deletes to be visible,
	// so the rounds end; the bound stops a removal that keeps finding documents.
	for round := 0; round < 1000 && !emptied; round++ {
		if round > 0 {
			now, err := d.getMarker(ctx, id)
			if err != nil {
				return err
			}
			if now == nil || now.at != mk.at {
				return nil // published again meanwhile: leave it
			}
		}
		q, _ := json.Marshal(map[string]any{"size": 1000, "_source": false, "query": detailsOf(hash, format)})
		code, body, err := d.c.Do(ctx, "details", http.MethodPost, "/"+url.PathEscape(index)+"/_search", nil, q)
		if err != nil {
			return fmt.Errorf("find old mapping details: %w", err)
		}
		if code == http.StatusNotFound { // the index is gone, and its documents with it
			emptied = true
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
			return fmt.Errorf("find old mapping details: %w: %w", ErrRefused, err)
		}
		if len(res.Hits.Hits) == 0 {
			emptied = true
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
		if _, _, err := bulkItems(ctx, d.c, buf.Bytes(), len(res.Hits.Hits), url.Values{"refresh": {"wait_for"}},
			"delete old mapping details from "+index); err != nil {
			return err
		}
	}
	if !emptied {
		return fmt.Errorf("delete old mapping details of %s from %s: still finding documents after 1000 rounds", hash[:min(12, len(hash))], index)
	}
	q := url.Values{"if_seq_no": {strconv.FormatInt(mk.at.seq, 10)}, "if_primary_term": {strconv.FormatInt(mk.at.term, 10)}}
	code, body, err := d.c.Do(ctx, "details", http.MethodDelete, "/"+url.PathEscape(d.state.index)+"/_doc/"+url.PathEscape(id), q, nil)
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", d.state.index, id, err)
	}
	if code != http.StatusOK && code != http.StatusNotFound && code != http.StatusConflict {
		return statusError("delete "+d.state.index+"/"+id, code, body)
	}
	return nil
}
