package enrich

import "strings"

// Alert is one alert document as read from a source.
type Alert struct {
	// ID and Index locate the document; Index is the concrete (backing) index.
	ID    string
	Index string
	// SeqNo and PrimaryTerm guard the write-back (optimistic concurrency); 0/0 means unknown.
	SeqNo       int64
	PrimaryTerm int64
	// Raw is the whole _source as stored, when the source provides it. Writers splice
	// enricher's members into it (Splice), so nothing else on the alert is re-encoded.
	Raw []byte
	// Source is the decoded part of the _source the stages read (DecodeMembers): every
	// top-level member that could hold one of their fields. Stages must not modify it.
	Source map[string]any
}

// Key identifies an alert across indices: index and ID.
func (a *Alert) Key() string { return a.Index + "\x00" + a.ID }

// Patch is what a stage adds to one alert: top-level field name -> value.
// A stage's patch holds exactly one key, its namespace. nil means nothing to add.
type Patch map[string]any

// Values returns every leaf value found at a dotted field path in a _source document.
// It accepts every spelling Elasticsearch accepts for the same path: dotted top-level keys
// ("kibana.alert.rule.threat"), nested objects, and any mix, and it descends into arrays
// of objects. Arrays at the leaf are flattened; a lone value counts as a one-element array.
func Values(src map[string]any, path string) []any {
	var out []any
	collect(src, path, &out)
	return out
}

func collect(m map[string]any, path string, out *[]any) {
	if v, ok := m[path]; ok {
		leaf(v, out)
	}
	// Try each split of the path: the first k segments as one (possibly dotted) key.
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		v, ok := m[path[:i]]
		if !ok {
			continue
		}
		descend(v, path[i+1:], out)
	}
}

func descend(v any, rest string, out *[]any) {
	switch x := v.(type) {
	case map[string]any:
		collect(x, rest, out)
	case []any:
		for _, e := range x {
			descend(e, rest, out)
		}
	}
}

func leaf(v any, out *[]any) {
	if a, ok := v.([]any); ok {
		for _, e := range a {
			leaf(e, out)
		}
		return
	}
	*out = append(*out, v)
}

// HasPrefixField reports whether name equals ns or lies under it ("ns.x").
func HasPrefixField(name, ns string) bool {
	return name == ns || strings.HasPrefix(name, ns+".")
}
