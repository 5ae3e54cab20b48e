package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
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

// PluginNamespaceMapping is the mapping enricher puts on a plugin's namespace: an object
// whose fields are mapped dynamically even inside a "dynamic": false index (Kibana's alert
// indices), so what a plugin writes is searchable.
func PluginNamespaceMapping() map[string]any {
	return map[string]any{"type": "object", "dynamic": true}
}

// EnsureMappings puts the root object's mapping (and the mappings of extra namespaces, such
// as plugins') on every index matching the patterns that lacks them, and returns the indices
// it updated. It is cheap when nothing is missing: one field-mapping lookup, plus one
// filtered mapping lookup when there are extra namespaces.
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
	missing := map[string]bool{}
	for ix, m := range got {
		if _, ok := m.Mappings[probe]; !ok {
			missing[ix] = true
		}
	}
	if len(extra) > 0 {
		// Object fields do not show in the field-mapping API: ask for the namespaces'
		// "type" in the index mappings, filtered down to just that.
		var paths []string
		for ns := range extra {
			paths = append(paths, "*.mappings.properties."+ns+".type")
		}
		q := hiddenToo()
		q.Set("filter_path", strings.Join(paths, ","))
		code, body, err := c.Do(ctx, "mapping", http.MethodGet, "/"+joinIndices(indices)+"/_mapping", q, nil)
		if err != nil {
			return nil, fmt.Errorf("get mapping: %w", err)
		}
		if code != http.StatusOK {
			return nil, statusError("get mapping", code, body)
		}
		var have map[string]struct {
			Mappings struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"mappings"`
		}
		if err := json.Unmarshal(body, &have); err != nil {
			return nil, fmt.Errorf("decode mapping: %w", err)
		}
		for ix := range got {
			for ns := range extra {
				if _, ok := have[ix].Mappings.Properties[ns]; !ok {
					missing[ix] = true
				}
			}
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
	updated := make([]string, 0, len(missing))
	for ix := range missing {
		code, body, err := c.Do(ctx, "mapping", http.MethodPut, "/"+url.PathEscape(ix)+"/_mapping",
			url.Values{"expand_wildcards": {"open,hidden"}}, put)
		if err != nil {
			return nil, fmt.Errorf("put mapping on %s: %w", ix, err)
		}
		if code != http.StatusOK {
			return nil, statusError("put mapping on "+ix, code, body)
		}
		updated = append(updated, ix)
	}
	sort.Strings(updated)
	return updated, nil
}
