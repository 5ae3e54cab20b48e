package enrich

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
)

// JSONAppender is implemented by patch values that encode themselves cheaply; writers
// append them as they are instead of going through encoding/json.
type JSONAppender interface {
	AppendJSON(dst []byte) []byte
}

// staticDoc is the technique-dependent part of a root document, encoded once.
type staticDoc struct {
	status string
	json   []byte   // `"key":value,` pairs, sorted by key, with a trailing comma
	nist   []string // canonical NIST SP 800-53 control IDs mapped, sorted (ComplianceCheck)
}

func newStaticDoc(status string, fields map[string]any) *staticDoc {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, k := range keys {
		buf.Write(appendJSONString(nil, k))
		buf.WriteByte(':')
		if err := enc.Encode(fields[k]); err != nil {
			panic("enrich: encode " + k + ": " + err.Error()) // only plain maps, slices and strings
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		buf.WriteByte(',')
	}
	return &staticDoc{status: status, json: bytes.Clone(buf.Bytes())} // no spare capacity: the cache counts bytes
}

// RootDoc is the object the ATT&CK stage writes under its root field: the mappings of the
// alert's techniques (shared by every alert with the same techniques) plus what is
// particular to the alert. It encodes itself; see the README for the field reference.
type RootDoc struct {
	static     *staticDoc
	EnrichedAt string
	Problems   []Problem
	Pending    []string
	Generation Generation
	// Compliance is set on alerts that carry their own NIST tags (ComplianceFields).
	Compliance *ComplianceCheck
}

var (
	_ JSONAppender = (*RootDoc)(nil)
	_ StatusDoc    = (*RootDoc)(nil)
)

// Status is enriched, unmapped or no_technique.
func (d *RootDoc) Status() string { return d.static.status }

// SetPending implements StatusDoc.
func (d *RootDoc) SetPending(stages []string) { d.Pending = stages }

// SetGeneration implements StatusDoc.
func (d *RootDoc) SetGeneration(g Generation) { d.Generation = g }

// AppendJSON implements JSONAppender.
func (d *RootDoc) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = append(dst, d.static.json...)
	dst = append(dst, `"status":`...)
	dst = appendJSONString(dst, d.static.status)
	dst = append(dst, `,"enriched_at":`...)
	dst = appendJSONString(dst, d.EnrichedAt)
	dst = append(dst, `,"ruleset":{"generation":`...)
	dst = strconv.AppendInt(dst, d.Generation.Number, 10)
	dst = append(dst, `,"hash":`...)
	dst = appendJSONString(dst, d.Generation.Hash)
	dst = append(dst, `,"version":`...)
	dst = appendJSONString(dst, d.Generation.RulesVersion)
	dst = append(dst, '}')
	dst = append(dst, `,"problems":[`...)
	for i, p := range d.Problems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"field":`...)
		dst = appendJSONString(dst, p.Field)
		dst = append(dst, `,"value":`...)
		dst = appendJSONString(dst, p.Value)
		dst = append(dst, `,"reason":`...)
		dst = appendJSONString(dst, p.Reason)
		dst = append(dst, '}')
	}
	if d.Compliance != nil {
		dst = append(dst, `],"compliance_check":`...)
		dst = d.Compliance.appendJSON(dst)
		dst = append(dst, `,"`+PendingField+`":[`...)
	} else {
		dst = append(dst, `],"`+PendingField+`":[`...)
	}
	for i, p := range d.Pending {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, p)
	}
	return append(dst, "]}"...)
}

// MarshalJSON implements json.Marshaler.
func (d *RootDoc) MarshalJSON() ([]byte, error) { return d.AppendJSON(nil), nil }

// appendJSONString appends s as a JSON string (strconv.Quote's escapes are not all JSON).
func appendJSONString(dst []byte, s string) []byte {
	safe := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			safe = false
			break
		}
	}
	if safe {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
