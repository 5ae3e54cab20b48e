package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Alerts travel as the raw bytes of their _source. Enricher reads only the top-level
// members its stages need (DecodeMembers) and writes by splicing its own members into
// the original bytes (Splice): nothing outside the members it owns is re-encoded, so
// large integers, escapes, invalid UTF-8, key order and duplicate keys elsewhere on the
// alert stay exactly as they were.

// ErrNotObject is returned for input that is not a JSON object.
var ErrNotObject = errors.New("not a JSON object")

// MaxDepth bounds the nesting of objects and arrays the scanner accepts, as
// encoding/json does.
const MaxDepth = 10000

// member is one top-level member of a JSON object: `"key" : value`.
type member struct {
	key      string
	keyStart int // offset of the key's opening quote
	valStart int // offset of the value's first byte
	valEnd   int // offset just after the value
}

// scanObject returns the top-level members of a JSON object, and the offset of its
// closing brace. It checks the structure it walks (strings, brackets, depth) but does not
// validate every literal inside values; use json.Valid first where input is untrusted.
func scanObject(b []byte) (members []member, closing int, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, 0, ErrNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, i, checkTrailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, 0, fmt.Errorf("%w: expected a key at offset %d", ErrNotObject, i)
		}
		keyStart := i
		end, err := skipString(b, i)
		if err != nil {
			return nil, 0, err
		}
		key, err := unquote(b[keyStart:end])
		if err != nil {
			return nil, 0, err
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, fmt.Errorf("%w: expected ':' at offset %d", ErrNotObject, i)
		}
		i = skipSpace(b, i+1)
		valStart := i
		if i, err = skipValue(b, i); err != nil {
			return nil, 0, err
		}
		members = append(members, member{key: key, keyStart: keyStart, valStart: valStart, valEnd: i})
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, 0, fmt.Errorf("%w: unexpected end", ErrNotObject)
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return members, i, checkTrailing(b, i+1)
		default:
			return nil, 0, fmt.Errorf("%w: expected ',' or '}' at offset %d", ErrNotObject, i)
		}
	}
}

func checkTrailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return fmt.Errorf("%w: data after the object at offset %d", ErrNotObject, i)
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset after the string starting at b[i] (a '"').
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated string at offset %d", ErrNotObject, i)
}

// skipValue returns the offset after the value starting at b[i]. Nested values are
// walked iteratively, so depth costs no stack; it is bounded by MaxDepth.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("%w: missing value", ErrNotObject)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			j++
		}
		if j == i {
			return 0, fmt.Errorf("%w: missing value at offset %d", ErrNotObject, i)
		}
		return j, nil
	}
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, err := skipString(b, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return 0, fmt.Errorf("%w: nested deeper than %d", ErrNotObject, MaxDepth)
			}
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: unterminated value at offset %d", ErrNotObject, i)
}

func unquote(q []byte) (string, error) {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", fmt.Errorf("%w: bad key %s", ErrNotObject, q)
	}
	return s, nil
}

// CouldHold reports whether a top-level key can hold (part of) the value at a dotted
// field path: the key is the path, or one of its dotted prefixes ("kibana.alert" for
// "kibana.alert.rule.threat"), or lies under it ("attack_mappings.status" for
// "attack_mappings").
func CouldHold(key, path string) bool {
	return key == path || strings.HasPrefix(path, key+".") || strings.HasPrefix(key, path+".")
}

// DecodeMembers decodes the top-level members of the object raw whose key could hold one
// of the paths, numbers as json.Number. A key given twice (possible outside
// Elasticsearch) keeps every value, as an array, so no value is lost to the second.
func DecodeMembers(raw []byte, paths []string) (map[string]any, error) {
	members, _, err := scanObject(raw)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(paths))
	for _, m := range members {
		if !wanted(m.key, paths) {
			continue
		}
		v, err := decodeValue(raw[m.valStart:m.valEnd])
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.key, err)
		}
		if prev, dup := out[m.key]; dup {
			if arr, ok := prev.(dupValues); ok {
				out[m.key] = append(arr, v)
			} else {
				out[m.key] = dupValues{prev, v}
			}
			continue
		}
		out[m.key] = v
	}
	for k, v := range out {
		if d, ok := v.(dupValues); ok {
			out[k] = []any(d)
		}
	}
	return out, nil
}

// dupValues marks the values of a key given more than once while decoding.
type dupValues []any

func wanted(key string, paths []string) bool {
	for _, p := range paths {
		if CouldHold(key, p) {
			return true
		}
	}
	return false
}

func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Splice returns raw with the top-level members named in set given the encoded values
// in set, and every other member whose key lies under one of them ("root.x" beside
// "root") removed. A member that exists keeps its place (the first of duplicates; the
// others go); a new one is appended after the last member kept. Every byte outside those
// members is kept as it was. A nil value in set removes the member.
func Splice(raw []byte, set map[string][]byte) ([]byte, error) {
	members, closing, err := scanObject(raw)
	if err != nil {
		return nil, err
	}
	var cuts []span
	placed := map[string]bool{}
	keptBefore := false // a member before the current one stays in the object
	insertAt := closing
	for i, m := range members {
		name, own := owner(m.key, set)
		if !own {
			keptBefore, insertAt = true, m.valEnd
			continue
		}
		if m.key == name && !placed[name] && set[name] != nil {
			placed[name] = true
			cuts = append(cuts, span{from: m.valStart, to: m.valEnd, with: set[name]})
			keptBefore, insertAt = true, m.valEnd
			continue
		}
		// Remove the member with one comma: the one before it when a kept member precedes
		// it, else the one after it.
		switch {
		case keptBefore:
			cuts = append(cuts, span{from: members[i-1].valEnd, to: m.valEnd})
		case i+1 < len(members):
			cuts = append(cuts, span{from: m.keyStart, to: members[i+1].keyStart})
		default:
			cuts = append(cuts, span{from: m.keyStart, to: m.valEnd})
		}
	}
	var add []string
	for k, v := range set {
		if !placed[k] && v != nil {
			add = append(add, k)
		}
	}
	if len(add) > 0 {
		sort.Strings(add)
		var ins []byte
		for i, k := range add {
			if keptBefore || i > 0 {
				ins = append(ins, ',')
			}
			ins = appendJSONString(ins, k)
			ins = append(ins, ':')
			ins = append(ins, set[k]...)
		}
		// An insertion sorts before a removal that starts at the same offset.
		cuts = append(cuts, span{from: insertAt, to: insertAt, with: ins})
		sort.SliceStable(cuts, func(i, j int) bool {
			if cuts[i].from != cuts[j].from {
				return cuts[i].from < cuts[j].from
			}
			return cuts[i].to == cuts[i].from && cuts[j].to != cuts[j].from
		})
	}
	out := make([]byte, 0, len(raw)+sumLen(set)+32*len(add))
	pos := 0
	for _, c := range cuts {
		out = append(out, raw[pos:c.from]...)
		out = append(out, c.with...)
		pos = c.to
	}
	return append(out, raw[pos:]...), nil
}

// span replaces raw[from:to] with with.
type span struct {
	from, to int
	with     []byte
}

// owner returns the key of set that key is, or lies under.
func owner(key string, set map[string][]byte) (string, bool) {
	if _, ok := set[key]; ok {
		return key, true
	}
	for name := range set {
		if strings.HasPrefix(key, name+".") {
			return name, true
		}
	}
	return "", false
}

func sumLen(set map[string][]byte) int {
	n := 0
	for _, v := range set {
		n += len(v)
	}
	return n
}
