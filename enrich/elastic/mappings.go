package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

func kw() map[string]any      { return map[string]any{"type": "keyword"} }
func boolean() map[string]any { return map[string]any{"type": "boolean"} }

func props(fields map[string]any) map[string]any { return map[string]any{"properties": fields} }

// provenance are the fields every control, detection and related entry carries.
func provenance() map[string]any {
	return map[string]any{
		"technique": kw(), "inherited": boolean(), "framework": kw(), "framework_version": kw(),
		"attack_version": kw(), "mapping_version": kw(), "mapping_type": kw(),
		"source_mapping_type": kw(), "source_id": kw(), "also_in": kw(),
	}
}

// RootMapping returns the Elasticsearch mapping of enricher's root object: keywords that
// Kibana users can filter on with KQL, booleans, one date, and the free-text comments.
func RootMapping() map[string]any {
	controls := provenance()
	for _, f := range []string{"id", "name", "group"} {
		controls[f] = kw()
	}
	detections := provenance()
	for _, f := range []string{"product", "capability_id", "score_category", "score_value", "queries"} {
		detections[f] = kw()
	}
	detections["references"] = map[string]any{"type": "keyword", "index": false}
	detections["comments"] = map[string]any{"type": "text"}
	detections["alerts"] = props(map[string]any{"id": kw(), "name": kw()})
	detections["events"] = props(map[string]any{"id": kw(), "logon_type": kw()})
	return props(map[string]any{
		"status":              kw(),
		"techniques":          kw(),
		"unmapped_techniques": kw(),
		"inherited_from":      kw(),
		"frameworks":          kw(),
		"has_detection":       boolean(),
		"pending_stages":      kw(),
		"enriched_at":         map[string]any{"type": "date"},
		"revoked":             props(map[string]any{"id": kw(), "replaced_by": kw(), "deprecated": boolean()}),
		"controls":            props(controls),
		"detections":          props(detections),
		"related":             props(controls),
		"ruleset":             props(map[string]any{"version": kw(), "hash": kw()}),
		"problems":            props(map[string]any{"field": kw(), "value": kw(), "reason": kw()}),
	})
}

// EnsureMappings puts the root object's mapping (and any extra namespaces' mappings) on
// every index matching the patterns that lacks it, and returns the indices it updated.
// It is cheap when nothing is missing: one field-mapping lookup.
func (c *Client) EnsureMappings(ctx context.Context, indices []string, root string, extra map[string]map[string]any) ([]string, error) {
	probe := root + ".ruleset.hash"
	code, body, err := c.Do(ctx, "mapping", http.MethodGet,
		"/"+joinIndices(indices)+"/_mapping/field/"+url.PathEscape(probe), hiddenToo(), nil)
	if err != nil {
		return nil, fmt.Errorf("get field mapping: %w", err)
	}
	if code == http.StatusNotFound {
		return nil, nil
	}
	if code != http.StatusOK {
		return nil, statusError("get field mapping", code, body)
	}
	var got map[string]struct {
		Mappings map[string]json.RawMessage `json:"mappings"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return nil, fmt.Errorf("decode field mapping: %w", err)
	}
	var missing []string
	for ix, m := range got {
		if _, ok := m.Mappings[probe]; !ok {
			missing = append(missing, ix)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	properties := map[string]any{root: RootMapping()}
	for ns, m := range extra {
		properties[ns] = m
	}
	put, err := json.Marshal(map[string]any{"properties": properties})
	if err != nil {
		return nil, err
	}
	for _, ix := range missing {
		code, body, err := c.Do(ctx, "mapping", http.MethodPut, "/"+url.PathEscape(ix)+"/_mapping",
			url.Values{"expand_wildcards": {"open,hidden"}}, put)
		if err != nil {
			return nil, fmt.Errorf("put mapping on %s: %w", ix, err)
		}
		if code != http.StatusOK {
			return nil, statusError("put mapping on "+ix, code, body)
		}
	}
	return missing, nil
}
