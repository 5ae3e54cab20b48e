package coverage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/enricher-dev/enricher/rules"
)

// DefaultAlertsIndex is where Kibana writes security alerts (hidden backing indices behind
// per-space aliases).
const DefaultAlertsIndex = ".alerts-security.alerts-*"

// DefaultIndex is the index coverage documents go to.
const DefaultIndex = "enricher-coverage"

// AlertTechniqueFields are the alert fields that carry technique IDs, counted by AlertCounts.
var AlertTechniqueFields = []string{
	"kibana.alert.rule.threat.technique.id",
	"kibana.alert.rule.threat.technique.subtechnique.id",
	"threat.technique.id",
	"threat.technique.subtechnique.id",
}

// ErrElasticsearch wraps every error Elasticsearch answered with.
var ErrElasticsearch = errors.New("elasticsearch error")

// AlertQuery selects the alerts AlertCounts counts.
type AlertQuery struct {
	// Index is a pattern; default DefaultAlertsIndex. Hidden indices are included.
	Index string
	// Since is Elasticsearch date math for the lower bound of @timestamp ("now-30d") or
	// an RFC 3339 time; empty means all time.
	Since string
	// MaxTechniques bounds each terms aggregation (default 2000; ATT&CK has ~700 IDs).
	MaxTechniques int
}

// AlertCounts returns how many alerts carry each technique ID. It runs a terms aggregation
// on each of AlertTechniqueFields to find the IDs present, then one filters aggregation with
// a filter per ID over all four fields, so an alert that carries an ID in two fields (a
// Kibana rule mapping and the source event's ECS threat.*) counts once for it. IDs are
// normalized; values that are not technique IDs are left out.
func AlertCounts(ctx context.Context, es *elasticsearch.Client, q AlertQuery) (map[string]int64, error) {
	if q.Index == "" {
		q.Index = DefaultAlertsIndex
	}
	if q.MaxTechniques <= 0 {
		q.MaxTechniques = 2000
	}
	var filter []any
	if q.Since != "" {
		filter = append(filter, map[string]any{"range": map[string]any{"@timestamp": map[string]any{"gte": q.Since}}})
	}
	query := map[string]any{"bool": map[string]any{"filter": filter}}
	aggs := map[string]any{}
	for i, f := range AlertTechniqueFields {
		aggs[fmt.Sprintf("f%d", i)] = map[string]any{"terms": map[string]any{"field": f, "size": q.MaxTechniques}}
	}
	var first struct {
		Aggregations map[string]struct {
			Buckets []struct {
				Key string `json:"key"`
			} `json:"buckets"`
		} `json:"aggregations"`
	}
	if err := search(ctx, es, q.Index, map[string]any{"size": 0, "query": query, "aggs": aggs}, &first); err != nil {
		return nil, fmt.Errorf("find technique IDs in %s: %w", q.Index, err)
	}
	raw := map[string]bool{}
	for _, a := range first.Aggregations {
		for _, b := range a.Buckets {
			raw[b.Key] = true
		}
	}
	counts := map[string]int64{}
	if len(raw) == 0 {
		return counts, nil
	}
	// Spellings per normalized ID ("t1021.002" and "T1021.002" count as one).
	byID := map[string][]string{}
	for k := range raw {
		id := rules.NormalizeTechniqueID(k)
		if rules.IsTechniqueID(id) {
			byID[id] = append(byID[id], k)
		}
	}
	filters := map[string]any{}
	for id, spellings := range byID {
		var should []any
		for _, f := range AlertTechniqueFields {
			should = append(should, map[string]any{"terms": map[string]any{f: spellings}})
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
	if err := search(ctx, es, q.Index, body, &second); err != nil {
		return nil, fmt.Errorf("count alerts per technique in %s: %w", q.Index, err)
	}
	for id, b := range second.Aggregations.Techniques.Buckets {
		if b.DocCount > 0 {
			counts[id] = b.DocCount
		}
	}
	return counts, nil
}

func search(ctx context.Context, es *elasticsearch.Client, index string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	res, err := es.Search(
		es.Search.WithContext(ctx),
		es.Search.WithIndex(index),
		es.Search.WithBody(bytes.NewReader(b)),
		es.Search.WithExpandWildcards("open,hidden"),
		es.Search.WithIgnoreUnavailable(true),
		es.Search.WithAllowNoIndices(true),
		es.Search.WithTrackTotalHits(false),
	)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.IsError() {
		return responseError(res.StatusCode, res.Body)
	}
	var shards struct {
		Shards struct {
			Failed   int `json:"failed"`
			Failures []struct {
				Reason json.RawMessage `json:"reason"`
			} `json:"failures"`
		} `json:"_shards"`
	}
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
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

func responseError(status int, body io.Reader) error {
	b, _ := io.ReadAll(io.LimitReader(body, 2048))
	return fmt.Errorf("%w: status %d: %s", ErrElasticsearch, status, strings.TrimSpace(string(b)))
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
func EnsureIndex(ctx context.Context, es *elasticsearch.Client, index string) error {
	body := `{"mappings":` + IndexMapping + `}`
	res, err := es.Indices.Create(index, es.Indices.Create.WithContext(ctx), es.Indices.Create.WithBody(strings.NewReader(body)))
	if err != nil {
		return fmt.Errorf("create index %s: %w", index, err)
	}
	defer res.Body.Close()
	if !res.IsError() {
		return nil
	}
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusBadRequest || !bytes.Contains(data, []byte("resource_already_exists_exception")) {
		return fmt.Errorf("create index %s: %w", index, responseError(res.StatusCode, bytes.NewReader(data)))
	}
	pm, err := es.Indices.PutMapping([]string{index}, strings.NewReader(IndexMapping), es.Indices.PutMapping.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("update mapping of %s: %w", index, err)
	}
	defer pm.Body.Close()
	if pm.IsError() {
		return fmt.Errorf("update mapping of %s: %w", index, responseError(pm.StatusCode, pm.Body))
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
func WriteIndex(ctx context.Context, es *elasticsearch.Client, rep *Report, opts WriteOptions) (int, error) {
	if opts.Index == "" {
		opts.Index = DefaultIndex
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if err := EnsureIndex(ctx, es, opts.Index); err != nil {
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
		n, err := bulk(ctx, es, &buf, opts.Refresh)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func bulk(ctx context.Context, es *elasticsearch.Client, body io.Reader, refresh string) (int, error) {
	args := []func(*esapi.BulkRequest){es.Bulk.WithContext(ctx)}
	if refresh != "" {
		args = append(args, es.Bulk.WithRefresh(refresh))
	}
	res, err := es.Bulk(body, args...)
	if err != nil {
		return 0, fmt.Errorf("bulk index: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return 0, fmt.Errorf("bulk index: %w", responseError(res.StatusCode, res.Body))
	}
	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
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
