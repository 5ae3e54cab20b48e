package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// RootMapping returns the Elasticsearch mapping of enricher's root object, made from
// enrich.Schema: keywords an analyst filters on with KQL, booleans, longs, dates, the
// free-text comments. The object is "dynamic": false, so nothing but these fields is
// ever added to the index mapping by enricher's writes.
func RootMapping() map[string]any { return schemaMapping(enrich.Schema) }

// schemaMapping is the "dynamic": false object mapping of a schema.
func schemaMapping(schema []enrich.SchemaField) map[string]any {
	root := map[string]any{"dynamic": false, "properties": map[string]any{}}
	for _, f := range schema {
		parent := root
		segs := strings.Split(f.Path, ".")
		for _, seg := range segs[:len(segs)-1] {
			props := parent["properties"].(map[string]any)
			child, ok := props[seg].(map[string]any)
			if !ok {
				child = map[string]any{"properties": map[string]any{}}
				props[seg] = child
			}
			if _, ok := child["properties"]; !ok {
				child["properties"] = map[string]any{}
			}
			parent = child
		}
		props := parent["properties"].(map[string]any)
		leaf := segs[len(segs)-1]
		switch f.Type {
		case enrich.TypeObject, enrich.TypeObjectArr:
			if _, ok := props[leaf]; !ok {
				props[leaf] = map[string]any{"properties": map[string]any{}}
			}
		case enrich.TypeNoIndex:
			props[leaf] = map[string]any{"type": "keyword", "index": false, "doc_values": false}
		default:
			props[leaf] = map[string]any{"type": f.Type}
		}
	}
	return root
}

// PluginNamespaceMapping is the mapping enricher puts on a plugin's namespace: one
// flattened field, whatever keys the plugin writes. Its values are searchable (KQL
// `asset.criticality : "high"`, terms aggregations) even inside a "dynamic": false index
// (Kibana's alert indices), and a plugin writing many distinct keys adds no field to the
// index: Kibana resets its alert indices' field limit to 2500 and its own fields use most
// of it. Values are compared as keywords (a numeric range compares text).
func PluginNamespaceMapping() map[string]any {
	return map[string]any{"type": "flattened"}
}

// FieldsAdded is how many fields enricher adds to an index mapping: the root object's
// leaves and one per plugin namespace. Kibana's alert indices allow 2500 fields in all.
func FieldsAdded(namespaces int) int {
	want := map[string]string{}
	leafTypes("", RootMapping(), want)
	return len(want) + namespaces
}

// leafTypes flattens a mapping's properties into dotted leaf paths and their types.
func leafTypes(prefix string, m map[string]any, out map[string]string) {
	props, _ := m["properties"].(map[string]any)
	for name, v := range props {
		child, _ := v.(map[string]any)
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		if t, ok := child["type"].(string); ok && t != "object" && t != "nested" {
			out[p] = t
			continue
		}
		leafTypes(p, child, out)
	}
}

// indexMapping is what Prepare reads of one index's mapping.
type indexMapping struct {
	Mappings struct {
		Source *struct {
			Enabled  *bool    `json:"enabled"`
			Includes []string `json:"includes"`
			Excludes []string `json:"excludes"`
		} `json:"_source"`
		Properties map[string]json.RawMessage `json:"properties"`
	} `json:"mappings"`
}

// Prepare implements runner.Store: it reads the mapping of enricher's fields on every
// index (matching the patterns when indices is nil), puts the missing ones (what a newer
// enricher added included), and reports each index that cannot take enricher's writes:
// a _source that is not stored whole (enricher writes the whole document back), a
// mapping that conflicts, a put refused for lack of privilege.
func (s *Store) Prepare(ctx context.Context, indices []string) ([]string, []runner.IndexProblem, error) {
	targets := s.o.Indices
	if indices != nil {
		if len(indices) == 0 {
			return nil, nil, nil
		}
		targets = indices
	}
	var ready []string
	var problems []runner.IndexProblem
	for _, chunk := range chunkNames(targets, 2000) {
		r, p, err := s.prepare(ctx, chunk)
		if err != nil {
			return nil, nil, err
		}
		ready, problems = append(ready, r...), append(problems, p...)
	}
	return ready, problems, nil
}

func (s *Store) prepare(ctx context.Context, targets []string) ([]string, []runner.IndexProblem, error) {
	q := hiddenToo()
	paths := []string{"*.mappings._source", "*.mappings.properties." + s.o.Root}
	for ns := range s.o.Namespaces {
		paths = append(paths, "*.mappings.properties."+ns+".type", "*.mappings.properties."+ns+".dynamic")
	}
	q.Set("filter_path", strings.Join(paths, ","))
	code, body, err := s.c.Do(ctx, "mapping", http.MethodGet, "/"+joinIndices(targets)+"/_mapping", q, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read mappings: %w", err)
	}
	if code == http.StatusNotFound {
		return nil, nil, nil
	}
	if code != http.StatusOK {
		return nil, nil, statusError("read mappings of "+strings.Join(targets, ","), code, body)
	}
	// filter_path drops indices with none of the paths: list them from the targets too.
	got := map[string]indexMapping{}
	if len(body) > 2 {
		if err := json.Unmarshal(body, &got); err != nil {
			return nil, nil, fmt.Errorf("decode mappings: %w", err)
		}
	}
	names, err := s.resolve(ctx, targets)
	if err != nil {
		return nil, nil, err
	}
	want := map[string]string{}
	leafTypes("", RootMapping(), want)
	var ready []string
	var problems []runner.IndexProblem
	for _, ix := range names {
		m := got[ix]
		if src := m.Mappings.Source; src != nil && ((src.Enabled != nil && !*src.Enabled) || len(src.Includes)+len(src.Excludes) > 0) {
			problems = append(problems, runner.IndexProblem{Index: ix, Reason: "no_source", Permanent: true,
				Detail: "_source is disabled or filtered in the index mapping; enricher writes the whole document back and would lose fields"})
			continue
		}
		have := map[string]string{}
		if raw, ok := m.Mappings.Properties[s.o.Root]; ok {
			var rm map[string]any
			_ = json.Unmarshal(raw, &rm)
			leafTypes("", rm, have)
		}
		missing, conflict := diffMapping(want, have)
		if conflict != "" {
			problems = append(problems, runner.IndexProblem{Index: ix, Reason: "mapping_conflict", Permanent: true, Detail: conflict})
			continue
		}
		var missingNS []string
		for ns := range s.o.Namespaces {
			if _, ok := m.Mappings.Properties[ns]; !ok {
				missingNS = append(missingNS, ns)
			}
		}
		if len(missing)+len(missingNS) == 0 {
			ready = append(ready, ix)
			continue
		}
		if !s.o.InstallMappings {
			if _, ok := have[enrich.FieldGeneration]; !ok {
				s.warnOnce("unsearchable:"+ix, "enricher's fields are not mapped on this index and install_mappings is off: "+
					"alerts there cannot be selected by generation, so every poll reads them again (they are still written once)",
					"index", ix)
			}
			ready = append(ready, ix)
			continue
		}
		if p := s.putMapping(ctx, ix, missingNS); p != nil {
			if p.Reason == "unavailable" {
				return nil, nil, fmt.Errorf("put mapping on %s: %w: %s", ix, ErrUnavailable, p.Detail)
			}
			problems = append(problems, *p)
			continue
		}
		s.log.Info("put field mappings", "index", ix, "root", s.o.Root, "fields", len(missing), "namespaces", missingNS)
		ready = append(ready, ix)
	}
	return ready, problems, nil
}

// diffMapping returns the fields of want that have is missing, and a description of the
// first field mapped with another type.
func diffMapping(want, have map[string]string) (missing []string, conflict string) {
	for p, t := range want {
		ht, ok := have[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case ht != t:
			conflict = fmt.Sprintf("field %s is mapped as %s, enricher writes %s", p, ht, t)
		}
	}
	sort.Strings(missing)
	return missing, conflict
}

// putMapping puts the root's mapping (and missing plugin namespaces) on one index.
func (s *Store) putMapping(ctx context.Context, ix string, namespaces []string) *runner.IndexProblem {
	properties := map[string]any{s.o.Root: RootMapping()}
	for _, ns := range namespaces {
		properties[ns] = s.o.Namespaces[ns]
	}
	put, _ := json.Marshal(map[string]any{"properties": properties})
	code, body, err := s.c.Do(ctx, "mapping", http.MethodPut, "/"+url.PathEscape(ix)+"/_mapping",
		url.Values{"expand_wildcards": {"open,hidden"}}, put)
	switch {
	case code == 0 && err != nil:
		return &runner.IndexProblem{Index: ix, Reason: "unavailable", Detail: err.Error()}
	case code == http.StatusOK:
		return nil
	case code == http.StatusForbidden && bytes.Contains(body, []byte("cluster_block_exception")),
		code == http.StatusTooManyRequests && bytes.Contains(body, []byte("cluster_block_exception")):
		return &runner.IndexProblem{Index: ix, Reason: "read_only", Detail: "put mapping: " + errorReason(body)}
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		return &runner.IndexProblem{Index: ix, Reason: "forbidden", Permanent: true,
			Detail: "put mapping: " + errorReason(body) + " (grant indices:admin/mapping/put on this index, or run `enricher setup` with an administrator's key)"}
	case code == http.StatusBadRequest:
		return &runner.IndexProblem{Index: ix, Reason: "mapping_conflict", Permanent: true, Detail: "put mapping: " + errorReason(body)}
	}
	return &runner.IndexProblem{Index: ix, Reason: "unavailable", Detail: fmt.Sprintf("put mapping: status %d: %s", code, errorReason(body))}
}

// resolve returns the concrete indices (hidden ones and data stream backing indices
// included) that index names or patterns resolve to.
func (s *Store) resolve(ctx context.Context, targets []string) ([]string, error) {
	q := url.Values{"expand_wildcards": {"open,hidden"}}
	code, body, err := s.c.Do(ctx, "mapping", http.MethodGet, "/_resolve/index/"+joinIndices(targets), q, nil)
	if err != nil {
		return nil, fmt.Errorf("resolve indices: %w", err)
	}
	if code == http.StatusNotFound {
		return nil, nil
	}
	if code != http.StatusOK {
		return nil, statusError("resolve indices "+strings.Join(targets, ","), code, body)
	}
	var res struct {
		Indices []struct {
			Name       string   `json:"name"`
			Attributes []string `json:"attributes"`
		} `json:"indices"`
		Aliases []struct {
			Indices []string `json:"indices"`
		} `json:"aliases"`
		DataStreams []struct {
			BackingIndices []string `json:"backing_indices"`
		} `json:"data_streams"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode resolved indices: %w", err)
	}
	set := map[string]bool{}
	closed := map[string]bool{}
	for _, ix := range res.Indices {
		set[ix.Name] = true
		for _, a := range ix.Attributes {
			closed[ix.Name] = closed[ix.Name] || a == "closed"
		}
	}
	for _, a := range res.Aliases {
		for _, ix := range a.Indices {
			set[ix] = true
		}
	}
	for _, d := range res.DataStreams {
		for _, ix := range d.BackingIndices {
			set[ix] = true
		}
	}
	out := make([]string, 0, len(set))
	for ix := range set {
		if !closed[ix] {
			out = append(out, ix)
		}
	}
	sort.Strings(out)
	return out, nil
}

// chunkNames splits names so each chunk's comma-joined URL form stays under max bytes.
func chunkNames(names []string, max int) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, x := range names {
		l := len(url.PathEscape(x)) + 1
		if len(cur) > 0 && n+l > max {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, x)
		n += l
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
