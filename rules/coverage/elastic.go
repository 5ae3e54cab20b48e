package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/enricher-dev/enricher/rules"
)

// DefaultAlertsIndex is where Kibana writes security alerts (hidden backing indices behind
// per-space aliases).
const DefaultAlertsIndex = ".alerts-security.alerts-*"

// DefaultIndex is the index coverage documents go to.
const DefaultIndex = "enricher-coverage"

// Client is what coverage needs of a store: one request, its status and body. The
// daemon's client (enrich/elastic.Client) is one, with its configuration, TLS,
// credentials and server detection.
type Client interface {
	Do(ctx context.Context, op, method, path string, q url.Values, body []byte) (int, []byte, error)
}

// AlertField is one alert field that carries technique IDs.
type AlertField struct {
	Path string
	// Technique reads a technique ID from one value (a Sigma tag "attack.t1021.002", say);
	// nil reads IDs as they are. ok false: the value names no technique.
	Technique func(value string) (id string, ok bool)
	// Include, when set, is a regular expression (Lucene syntax) the values must match to
	// be looked at: on a tag field, the technique tags, so that busier tags cannot push
	// them out of the terms aggregation's top MaxTechniques.
	Include string
}

// TechniqueTags is the Include of a Sigma-style tag field: attack.t1021 and
// attack.t1021.002, in either case.
const TechniqueTags = `[aA][tT][tT][aA][cC][kK]\.[tT][0-9]{4}(\.[0-9]{3})?`

// DefaultAlertFields are the Kibana and ECS ID fields (the daemon's configuration gives
// every field it enriches by, Wazuh's and the tag fields included).
var DefaultAlertFields = []AlertField{
	{Path: "kibana.alert.rule.threat.technique.id"},
	{Path: "kibana.alert.rule.threat.technique.subtechnique.id"},
	{Path: "threat.technique.id"},
	{Path: "threat.technique.subtechnique.id"},
}

// ErrElasticsearch wraps every error the store answered with.
var ErrElasticsearch = errors.New("elasticsearch error")

// AlertQuery selects the alerts AlertCounts counts.
type AlertQuery struct {
	// Index is a comma-separated list of patterns; default DefaultAlertsIndex. Hidden
	// indices are included.
	Index string
	// Fields carry the technique IDs; default DefaultAlertFields.
	Fields []AlertField
	// TimeField bounds the alerts by Since; default @timestamp.
	TimeField string
	// Since is date math for the lower bound of TimeField ("now-30d") or an RFC 3339
	// time; empty means all time.
	Since string
	// MaxTechniques bounds each terms aggregation (default 2000; ATT&CK has ~700 IDs).
	MaxTechniques int
}

// AlertCounts returns how many alerts carry each technique ID, and the fields it could
// not count by (no index maps them as a keyword). It finds each field's aggregatable
// form (the field, or its .keyword subfield in a dynamically mapped index), runs a terms
// aggregation on each to find the values present, reads technique IDs from them, then
// runs one filters aggregation with a filter per ID over every field, so an alert that
// carries an ID in two fields (a Kibana rule mapping and a Sigma tag) counts once for it.
func AlertCounts(ctx context.Context, c Client, q AlertQuery) (map[string]int64, []string, error) {
	if q.Index == "" {
		q.Index = DefaultAlertsIndex
	}
	if len(q.Fields) == 0 {
		q.Fields = DefaultAlertFields
	}
	if q.TimeField == "" {
		q.TimeField = "@timestamp"
	}
	if q.MaxTechniques <= 0 {
		q.MaxTechniques = 2000
	}
	aggField, skipped, err := aggregatable(ctx, c, q.Index, q.Fields)
	if err != nil {
		return nil, nil, err
	}
	var filter []any
	if q.Since != "" {
		filter = append(filter, map[string]any{"range": map[string]any{q.TimeField: map[string]any{"gte": q.Since}}})
	}
	query := map[string]any{"bool": map[string]any{"filter": filter}}
	counts := map[string]int64{}
	aggs := map[string]any{}
	for i := range q.Fields {
		if af := aggField[i]; af != "" {
			terms := map[string]any{"field": af, "size": q.MaxTechniques}
			if q.Fields[i].Include != "" {
				terms["include"] = q.Fields[i].Include
			}
			aggs[fmt.Sprintf("f%d", i)] = map[string]any{"terms": terms}
		}
	}
	if len(aggs) == 0 {
		return counts, skipped, nil
	}
	var first struct {
		Aggregations map[string]struct {
			Buckets []struct {
				Key any `json:"key"`
			} `json:"buckets"`
		} `json:"aggregations"`
	}
	if err := search(ctx, c, q.Index, map[string]any{"size": 0, "query": query, "aggs": aggs}, &first); err != nil {
		return nil, nil, fmt.Errorf("find technique IDs in %s: %w", q.Index, err)
	}
	// Spellings per normalized ID and field ("t1021.002", "attack.t1021.002" and
	// "T1021.002" count as one ID).
	byID := map[string]map[string][]string{}
	for i, f := range q.Fields {
		for _, b := range first.Aggregations[fmt.Sprintf("f%d", i)].Buckets {
			v, ok := b.Key.(string)
			if !ok {
				continue
			}
			id, ok := readTechnique(f, v)
			if !ok {
				continue
			}
			if byID[id] == nil {
				byID[id] = map[string][]string{}
			}
			byID[id][aggField[i]] = append(byID[id][aggField[i]], v)
		}
	}
	if len(byID) == 0 {
		return counts, skipped, nil
	}
	filters := map[string]any{}
	for id, fields := range byID {
		var should []any
		for field, spellings := range fields {
			should = append(should, map[string]any{"terms": map[string]any{field: spellings}})
		}
		filters[id] = map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}}
	}
	var second struct {
		Aggregations struct {
			Techniques struct {
				Buckets map[string]struct {
					DocCount int64 `json:"doc_count"`
				} `json:"buckets"`
			} `json:"techniques"`
		} `json:"aggregations"`
	}
	body := map[string]any{"size": 0, "query": query, "aggs": map[string]any{"techniques": map[string]any{"filters": map[string]any{"filters": filters}}}}
	if err := search(ctx, c, q.Index, body, &second); err != nil {
		return nil, nil, fmt.Errorf("count alerts per technique in %s: %w", q.Index, err)
	}
	for id, b := range second.Aggregations.Techniques.Buckets {
		if b.DocCount > 0 {
			counts[id] = b.DocCount
		}
	}
	return counts, skipped, nil
}

func readTechnique(f AlertField, v string) (string, bool) {
	if f.Technique != nil {
		return f.Technique(v)
	}
	id := rules.NormalizeTechniqueID(v)
	return id, rules.IsTechniqueID(id)
}

// aggregatable returns, per field, the name to aggregate on ("" when no index maps it
// as an aggregatable field), and the paths left out.
func aggregatable(ctx context.Context, c Client, index string, fields []AlertField) ([]string, []string, error) {
	var names []string
	for _, f := range fields {
		names = append(names, f.Path, f.Path+".keyword")
	}
	q := url.Values{"fields": {strings.Join(names, ",")}, "expand_wildcards": {"open,hidden"},
		"ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
	code, body, err := c.Do(ctx, "coverage", http.MethodGet, "/"+url.PathEscape(index)+"/_field_caps", q, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read the mapping of %s: %w", index, err)
	}
	if code != http.StatusOK {
		return nil, nil, fmt.Errorf("read the mapping of %s: %w", index, responseError(code, body))
	}
	var caps struct {
		Fields map[string]map[string]struct {
			Aggregatable bool `json:"aggregatable"`
		} `json:"fields"`
	}
	if err := json.Unmarshal(body, &caps); err != nil {
		return nil, nil, fmt.Errorf("read the mapping of %s: %w: %w", index, ErrElasticsearch, err)
	}
	agg := func(name string) bool {
		for _, t := range caps.Fields[name] {
			if t.Aggregatable {
				return true
			}
		}
		return false
	}
	out := make([]string, len(fields))
	var skipped []string
	for i, f := range fields {
		switch {
		case agg(f.Path):
			out[i] = f.Path
		case agg(f.Path + ".keyword"):
			out[i] = f.Path + ".keyword"
		default:
			if len(caps.Fields[f.Path]) > 0 {
				skipped = append(skipped, f.Path) // mapped, but not as a keyword
			}
		}
	}
	return out, skipped, nil
}

func search(ctx context.Context, c Client, index string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	q := url.Values{"expand_wildcards": {"open,hidden"}, "ignore_unavailable": {"true"},
		"allow_no_indices": {"true"}, "track_total_hits": {"false"}}
	code, data, err := c.Do(ctx, "coverage", http.MethodPost, "/"+url.PathEscape(index)+"/_search", q, b)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return responseError(code, data)
	}
	var shards struct {
		Shards struct {
			Failed   int `json:"failed"`
			Failures []struct {
				Reason json.RawMessage `json:"reason"`
			} `json:"failures"`
		} `json:"_shards"`
	}
	if err := json.Unmarshal(data, &shards); err == nil && shards.Shards.Failed > 0 {
		reason := ""
		if len(shards.Shards.Failures) > 0 {
			reason = ": " + string(shards.Shards.Failures[0].Reason)
		}
		return fmt.Errorf("%w: %d shards failed%s", ErrElasticsearch, shards.Shards.Failed, reason)
	}
	return json.Unmarshal(data, out)
}

func responseError(status int, body []byte) error {
	if len(body) > 2048 {
		body = body[:2048]
	}
	return fmt.Errorf("%w: status %d: %s", ErrElasticsearch, status, strings.TrimSpace(string(body)))
}

// IndexMapping is the explicit mapping of the coverage index: keyword fields for every ID
// and label, numbers for counts. Dynamic mapping is strict, so a renamed field fails loudly
// instead of becoming an unsearchable text field.
const IndexMapping = `{
  "dynamic": "strict",
  "properties": {
    "@timestamp": {"type": "date"},
    "run": {"properties": {"id": {"type": "keyword"}}},
    "ruleset": {"properties": {"version": {"type": "keyword"}, "hash": {"type": "keyword"}}},
    "technique": {"properties": {
      "id": {"type": "keyword"},
      "name": {"type": "keyword"},
      "parent": {"type": "keyword"},
      "is_subtechnique": {"type": "boolean"},
      "tactics": {"type": "keyword"},
      "subtechniques": {"type": "keyword"}
    }},
    "rule": {"properties": {
      "count": {"type": "integer"},
      "enabled_count": {"type": "integer"},
      "parent_count": {"type": "integer"},
      "subtechnique_count": {"type": "integer"},
      "ids": {"type": "keyword"},
      "names": {"type": "keyword"},
      "sources": {"type": "keyword"}
    }},
    "control": {"properties": {
      "count": {"type": "integer"},
      "ids": {"type": "keyword"},
      "frameworks": {"type": "keyword"}
    }},
    "detection": {"properties": {
      "count": {"type": "integer"},
      "ids": {"type": "keyword"},
      "names": {"type": "keyword"}
    }},
    "alert": {"properties": {"count": {"type": "long"}}},
    "gaps": {"type": "keyword"},
    "has_gap": {"type": "boolean"},
    "revoked": {"properties": {
      "is_revoked": {"type": "boolean"},
      "replaced_by": {"type": "keyword"},
      "via_ids": {"type": "keyword"}
    }}
  }
}`

// Document is one coverage document: one technique in one run.
type Document struct {
	Timestamp time.Time `json:"@timestamp"`
	Run       struct {
		ID string `json:"id"`
	} `json:"run"`
	Ruleset struct {
		Version string `json:"version,omitempty"`
		Hash    string `json:"hash,omitempty"`
	} `json:"ruleset"`
	Technique struct {
		ID             string   `json:"id"`
		Name           string   `json:"name,omitempty"`
		Parent         string   `json:"parent,omitempty"`
		IsSubtechnique bool     `json:"is_subtechnique"`
		Tactics        []string `json:"tactics,omitempty"`
		Subtechniques  []string `json:"subtechniques,omitempty"`
	} `json:"technique"`
	Rule struct {
		Count             int      `json:"count"`
		EnabledCount      int      `json:"enabled_count"`
		ParentCount       int      `json:"parent_count"`
		SubtechniqueCount int      `json:"subtechnique_count"`
		IDs               []string `json:"ids,omitempty"`
		Names             []string `json:"names,omitempty"`
		Sources           []string `json:"sources,omitempty"`
	} `json:"rule"`
	Control struct {
		Count      int      `json:"count"`
		IDs        []string `json:"ids,omitempty"`
		Frameworks []string `json:"frameworks,omitempty"`
	} `json:"control"`
	Detection struct {
		Count int      `json:"count"`
		IDs   []string `json:"ids,omitempty"`
		Names []string `json:"names,omitempty"`
	} `json:"detection"`
	Alert *struct {
		Count int64 `json:"count"`
	} `json:"alert,omitempty"`
	Gaps    []string `json:"gaps,omitempty"`
	HasGap  bool     `json:"has_gap"`
	Revoked struct {
		IsRevoked  bool     `json:"is_revoked"`
		ReplacedBy []string `json:"replaced_by,omitempty"`
		ViaIDs     []string `json:"via_ids,omitempty"`
	} `json:"revoked"`
}

// Documents turns a report into one document per technique.
func Documents(rep *Report) []Document {
	out := make([]Document, 0, len(rep.Techniques))
	for _, t := range rep.Techniques {
		var d Document
		d.Timestamp = rep.GeneratedAt
		d.Run.ID = rep.RunID
		d.Ruleset.Version, d.Ruleset.Hash = rep.RulesetVersion, rep.RulesetHash
		d.Technique.ID, d.Technique.Name, d.Technique.Parent = t.ID, t.Name, t.Parent
		d.Technique.IsSubtechnique = t.Parent != ""
		d.Technique.Tactics, d.Technique.Subtechniques = t.Tactics, t.Subtechniques
		d.Rule.Count, d.Rule.EnabledCount = t.RuleCount(), t.EnabledRules
		d.Rule.ParentCount, d.Rule.SubtechniqueCount = len(t.ParentRules), t.SubtechniqueRules
		for _, r := range t.Rules {
			d.Rule.IDs = mergeStrings(d.Rule.IDs, r.ID)
			d.Rule.Names = mergeStrings(d.Rule.Names, r.Name)
			d.Rule.Sources = mergeStrings(d.Rule.Sources, string(r.Source))
		}
		d.Control.Count = len(t.Controls)
		for _, c := range t.Controls {
			d.Control.IDs = mergeStrings(d.Control.IDs, c.CapabilityID)
			d.Control.Frameworks = mergeStrings(d.Control.Frameworks, c.Framework)
		}
		d.Detection.Count = len(t.Detections)
		for _, c := range t.Detections {
			d.Detection.IDs = mergeStrings(d.Detection.IDs, c.CapabilityID)
			d.Detection.Names = mergeStrings(d.Detection.Names, c.Capability)
		}
		if t.Alerts != nil {
			d.Alert = &struct {
				Count int64 `json:"count"`
			}{*t.Alerts}
		}
		d.Gaps, d.HasGap = t.Gaps, len(t.Gaps) > 0
		if t.Revoked != nil {
			d.Revoked.IsRevoked, d.Revoked.ReplacedBy = true, t.Revoked.ReplacedBy
		}
		d.Revoked.ViaIDs = t.RevokedIDs
		out = append(out, d)
	}
	return out
}

// EnsureIndex creates the coverage index with IndexMapping, or adds the mapping to an
// existing index (idempotent; fails if an existing field has another type).
func EnsureIndex(ctx context.Context, c Client, index string) error {
	body := []byte(`{"mappings":` + IndexMapping + `}`)
	code, data, err := c.Do(ctx, "coverage", http.MethodPut, "/"+url.PathEscape(index), nil, body)
	if err != nil {
		return fmt.Errorf("create index %s: %w", index, err)
	}
	if code == http.StatusOK {
		return nil
	}
	if code != http.StatusBadRequest || !bytes.Contains(data, []byte("resource_already_exists_exception")) {
		return fmt.Errorf("create index %s: %w", index, responseError(code, data))
	}
	code, data, err = c.Do(ctx, "coverage", http.MethodPut, "/"+url.PathEscape(index)+"/_mapping", nil, []byte(IndexMapping))
	if err != nil {
		return fmt.Errorf("update mapping of %s: %w", index, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("update mapping of %s: %w", index, responseError(code, data))
	}
	return nil
}

// BulkError lists the documents a _bulk request did not index, by status.
type BulkError struct {
	Failed map[int]int // status -> count
	First  string      // the first item error
}

func (e *BulkError) Error() string {
	var parts []string
	codes := make([]int, 0, len(e.Failed))
	for c := range e.Failed {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d with status %d", e.Failed[c], c))
	}
	return fmt.Sprintf("bulk index: %s; first: %s", strings.Join(parts, ", "), e.First)
}

func (e *BulkError) Unwrap() error { return ErrElasticsearch }

// WriteOptions tune WriteIndex.
type WriteOptions struct {
	Index string // default DefaultIndex
	// Refresh is passed to _bulk ("", "true", "wait_for").
	Refresh string
	// BatchSize is the number of documents per _bulk request (default 500).
	BatchSize int
}

// WriteIndex installs the index mapping and writes one document per technique with _bulk.
// Document IDs are "<run id>:<technique>", so writing the same run twice overwrites it.
// It returns the number of documents written.
func WriteIndex(ctx context.Context, c Client, rep *Report, opts WriteOptions) (int, error) {
	if opts.Index == "" {
		opts.Index = DefaultIndex
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if err := EnsureIndex(ctx, c, opts.Index); err != nil {
		return 0, err
	}
	docs := Documents(rep)
	written := 0
	for start := 0; start < len(docs); start += opts.BatchSize {
		batch := docs[start:min(start+opts.BatchSize, len(docs))]
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, d := range batch {
			meta := map[string]any{"index": map[string]any{"_index": opts.Index, "_id": d.Run.ID + ":" + d.Technique.ID}}
			if err := enc.Encode(meta); err != nil {
				return written, err
			}
			if err := enc.Encode(d); err != nil {
				return written, err
			}
		}
		n, err := bulk(ctx, c, buf.Bytes(), opts.Refresh)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func bulk(ctx context.Context, c Client, body []byte, refresh string) (int, error) {
	var q url.Values
	if refresh != "" {
		q = url.Values{"refresh": {refresh}}
	}
	code, data, err := c.Do(ctx, "coverage", http.MethodPost, "/_bulk", q, body)
	if err != nil {
		return 0, fmt.Errorf("bulk index: %w", err)
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("bulk index: %w", responseError(code, data))
	}
	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, fmt.Errorf("bulk index: decode response: %w", err)
	}
	ok := 0
	be := &BulkError{Failed: map[int]int{}}
	for _, item := range out.Items {
		for _, r := range item {
			if r.Status >= 200 && r.Status < 300 {
				ok++
				continue
			}
			be.Failed[r.Status]++
			if be.First == "" {
				be.First = string(r.Error)
			}
		}
	}
	if len(be.Failed) > 0 {
		return ok, be
	}
	return ok, nil
}
