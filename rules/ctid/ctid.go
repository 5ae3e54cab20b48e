// Package ctid reads the CTID Mappings Explorer "unified" JSON format
// (schema/mapex-unified-data-schema.json in center-for-threat-informed-defense/mappings-explorer)
// and validates it in Go, without the schema file.
//
// Decode checks exactly what the published schema (JSON Schema draft 2020-12) checks: the
// document is an object with only "metadata" and "mapping_objects"; metadata has no unknown
// fields, its required fields, string types, the technology_domain and
// mapping_framework_version_schema enums, the MM/DD/YYYY date pattern, and the shape of
// mapping_types; every mapping object has no unknown fields, has mapping_type and
// capability_group (either may be null), and each field has its schema type and enum.
//
// Errors name the file, the row (1-based index in mapping_objects) and the field.
// Values outside the score_category and score_value enums are the one thing Decode can
// tolerate (Options.Lenient): the row keeps the value and the violation is returned in
// Document.Warnings, so that a file from a newer release with a new score is loaded and
// reported rather than refused. Validate is strict, and accepts exactly what the schema accepts.
//
// Decoding reads the input through a fixed buffer and cuts it into one value at a time (the
// metadata object, then each row of mapping_objects), validated by a small scanner and
// hand-written checks; it does not build generic map[string]any trees. DecodeReader keeps
// one row in memory, so a file of any size decodes within MaxRowBytes and MaxMetadataBytes;
// nesting is bounded by MaxDepth. ~17 MB of JSON decode in well under a second.
package ctid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Document is one decoded mapping file.
type Document struct {
	Metadata Metadata
	// HasMetadata is false when the file has no "metadata" object (the schema allows that).
	HasMetadata bool
	Rows        []Row
	// Warnings are schema violations that Options.Lenient tolerated (score enums).
	Warnings []*Error
}

// Metadata is the "metadata" object. Null values decode as "".
type Metadata struct {
	MappingVersion                string
	AttackVersion                 string
	TechnologyDomain              string
	CreationDate                  string
	LastUpdate                    string
	MappingFramework              string
	MappingFrameworkVersion       string
	MappingFrameworkVersionSchema string
	Author                        string
	Contact                       string
	Organization                  string
	// MappingTypes maps a mapping type key to its name and description.
	MappingTypes map[string]MappingType
	// CapabilityGroups maps a group ID to its name, when the value is a string.
	CapabilityGroups map[string]string
}

// MappingType is one entry of metadata.mapping_types.
type MappingType struct {
	Name        string
	Description string
}

// Row is one entry of mapping_objects. Null values decode as "" (References as nil).
type Row struct {
	Author                  string
	AuthorContact           string
	AuthorOrganization      string
	AttackObjectID          string
	AttackObjectName        string
	AttackVersion           string
	MappingFramework        string
	MappingFrameworkVersion string
	CapabilityID            string
	CapabilityDescription   string
	Comments                string
	References              []string
	MappingType             string
	CapabilityGroup         string
	Status                  string
	TechnologyDomain        string
	ScoreCategory           string
	ScoreValue              string
	RelatedScore            string
}

// Error is a schema violation: file, row (1-based index in mapping_objects, 0 when not
// about a row), field and, when useful, the offending value.
type Error struct {
	File  string
	Row   int
	Field string
	Value string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Row > 0 {
		fmt.Fprintf(&b, ": row %d", e.Row)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Options control Decode.
type Options struct {
	// Lenient keeps values outside the score_category/score_value enums and reports them in
	// Document.Warnings instead of failing.
	Lenient bool
}

// Validate reports the first violation of the published schema in data, or nil.
func Validate(name string, data []byte) error {
	_, err := Decode(name, data, Options{})
	return err
}

// Decode validates data against the unified schema and decodes it.
func Decode(name string, data []byte, opts Options) (*Document, error) {
	var rows []Row
	doc, err := DecodeReader(context.Background(), name, bytes.NewReader(data), opts, func(_ int, r *Row) error {
		rows = append(rows, *r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	doc.Rows = rows
	return doc, nil
}

// DecodeReader validates a mapping file read from r and calls fn with each entry of
// mapping_objects, in order (row is its 1-based index), instead of keeping them:
// Document.Rows stays nil. It keeps one row in memory at a time, so a file of any size is
// decoded within MaxRowBytes and MaxMetadataBytes. The metadata may follow the rows in the
// file; it is complete only when DecodeReader returns. An error from fn stops decoding and is
// returned as is. ctx is checked every 256 rows.
//
// A UTF-8 byte order mark at the start is skipped. A top-level key given twice is an error
// (the schema leaves duplicates undefined; encoding/json would keep the last).
func DecodeReader(ctx context.Context, name string, r io.Reader, opts Options, fn func(row int, r *Row) error) (*Document, error) {
	d := &decoder{file: name, opts: opts, doc: &Document{}}
	if err := d.stream(ctx, newReader(r), fn); err != nil {
		return nil, err
	}
	return d.doc, nil
}

type decoder struct {
	file string
	opts Options
	row  int
	doc  *Document
}

func (d *decoder) errf(field, value, format string, args ...any) *Error {
	return &Error{File: d.file, Row: d.row, Field: field, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// syntax turns a positioned JSON syntax error into an Error; other errors pass through.
func (d *decoder) syntax(err error) error {
	var pe *posError
	if !errors.As(err, &pe) {
		return err
	}
	row := d.row
	d.row = 0
	defer func() { d.row = row }()
	if pe.err.depth {
		return d.errf("", "", "line %d, column %d: %s", pe.line, pe.col, pe.err.msg)
	}
	return d.errf("", "", "invalid JSON at line %d, column %d: %s", pe.line, pe.col, pe.err.msg)
}

func (d *decoder) stream(ctx context.Context, rd *reader, fn func(int, *Row) error) error {
	rd.skipBOM()
	rd.ws()
	c, ok := rd.peek()
	if !ok {
		return d.syntax(rd.readErr())
	}
	if c != '{' {
		raw, line, col, err := rd.value(nil, MaxMetadataBytes, 0)
		if err == nil {
			err = validate(raw, 0, line, col)
		}
		if err != nil && !errors.Is(err, errTooLong) {
			return d.syntax(err)
		}
		return d.errf("", "", "got %s, want object", kind(json.RawMessage{c}))
	}
	rd.advance()
	seen := map[string]bool{}
	var buf []byte
	for first := true; ; first = false {
		rd.ws()
		c, ok := rd.peek()
		if !ok {
			return d.syntax(rd.readErr())
		}
		if c == '}' && first {
			rd.advance()
			break
		}
		if c != '"' {
			return d.syntax(rd.fail("invalid character %q looking for beginning of object key string", c))
		}
		raw, line, col, err := rd.value(buf[:0], MaxMetadataBytes, 1)
		if err == nil {
			err = validate(raw, 1, line, col)
		}
		if errors.Is(err, errTooLong) {
			return d.errf("", "", "line %d, column %d: object key longer than %d bytes", line, col, MaxMetadataBytes)
		}
		if err != nil {
			return d.syntax(err)
		}
		key, err := decodeString(raw)
		if err != nil {
			return d.syntax(rd.fail("%v", err))
		}
		if err := rd.expect(':', "after object key"); err != nil {
			return d.syntax(err)
		}
		if seen[key] {
			return d.errf(key, "", "duplicate field")
		}
		seen[key] = true
		switch key {
		case "metadata":
			raw, line, col, err := rd.value(buf[:0], MaxMetadataBytes, 1)
			if errors.Is(err, errTooLong) {
				return d.errf("metadata", "", "larger than the %d-byte limit", MaxMetadataBytes)
			}
			if err == nil {
				err = validate(raw, 1, line, col)
			}
			if err != nil {
				return d.syntax(err)
			}
			if err := d.metadata(raw); err != nil {
				return err
			}
			d.doc.HasMetadata = true
			buf = raw
		case "mapping_objects":
			if err := d.rows(ctx, rd, fn); err != nil {
				return err
			}
		default:
			return d.errf(key, "", "unknown field")
		}
		rd.ws()
		c, ok = rd.peek()
		if !ok {
			return d.syntax(rd.readErr())
		}
		rd.advance()
		if c == '}' {
			break
		}
		if c != ',' {
			return d.syntax(&posError{line: rd.line, col: rd.col - 1,
				err: &syntaxError{msg: fmt.Sprintf("invalid character %q after object key:value pair", c)}})
		}
	}
	rd.ws()
	if c, ok := rd.peek(); ok {
		return d.syntax(rd.fail("invalid character %q after top-level value", c))
	}
	if rd.err != nil {
		return rd.err
	}
	return nil
}

// rows reads the mapping_objects array one row at a time.
func (d *decoder) rows(ctx context.Context, rd *reader, fn func(int, *Row) error) error {
	rd.ws()
	c, ok := rd.peek()
	if !ok {
		return d.syntax(rd.readErr())
	}
	if c != '[' {
		return d.errf("mapping_objects", "", "got %s, want array", kind(json.RawMessage{c}))
	}
	rd.advance()
	defer func() { d.row = 0 }()
	var buf []byte
	for i := 0; ; i++ {
		rd.ws()
		c, ok := rd.peek()
		if !ok {
			return d.syntax(rd.readErr())
		}
		if c == ']' && i == 0 {
			rd.advance()
			return nil
		}
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		d.row = i + 1
		raw, line, col, err := rd.value(buf[:0], MaxRowBytes, 2)
		if errors.Is(err, errTooLong) {
			return d.errf("", "", "larger than the %d-byte limit of one row", MaxRowBytes)
		}
		if err == nil {
			err = validate(raw, 2, line, col)
		}
		if err != nil {
			return d.syntax(err)
		}
		buf = raw
		var row Row
		if err := d.mappingObject(raw, &row); err != nil {
			return err
		}
		if err := fn(i+1, &row); err != nil {
			return err
		}
		rd.ws()
		c, ok = rd.peek()
		if !ok {
			return d.syntax(rd.readErr())
		}
		if c == ']' {
			rd.advance()
			return nil
		}
		if c != ',' {
			return d.syntax(rd.fail("invalid character %q after array element", c))
		}
		rd.advance()
	}
}

// objectMap reads one object into a map of raw member values (the last of duplicate keys
// wins, as in encoding/json). It returns nil, nil when the value is not an object.
func objectMap(sc *scanner) (map[string]json.RawMessage, error) {
	sc.ws()
	if sc.pos >= len(sc.data) || sc.data[sc.pos] != '{' {
		_, err := sc.value()
		return nil, err
	}
	m := map[string]json.RawMessage{}
	err := sc.members(func(key string) error {
		v, err := sc.value()
		m[key] = v
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// kind names the JSON type of a raw value as JSON Schema does.
func kind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// unknown fails on the first (sorted) key of obj that is not allowed.
func (d *decoder) unknown(prefix string, obj map[string]json.RawMessage, allowed ...string) error {
	var bad []string
	for k := range obj {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return d.errf(prefix+bad[0], "", "unknown field")
}

func (d *decoder) object(field string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	if kind(raw) != "object" {
		return nil, d.errf(field, "", "got %s, want object", kind(raw))
	}
	m, err := objectMap(&scanner{data: raw})
	if err != nil {
		return nil, d.errf(field, "", "%v", err)
	}
	return m, nil
}

// str decodes a JSON string; nullable allows null (returned as "").
func (d *decoder) str(field string, raw json.RawMessage, nullable bool) (string, error) {
	switch kind(raw) {
	case "string":
		return decodeString(raw)
	case "null":
		if nullable {
			return "", nil
		}
	}
	want := "string"
	if nullable {
		want = "string or null"
	}
	return "", d.errf(field, "", "got %s, want %s", kind(raw), want)
}

func decodeString(raw json.RawMessage) (string, error) {
	return (&scanner{data: raw}).str()
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func isDate(s string) bool {
	if len(s) != 10 || s[2] != '/' || s[5] != '/' {
		return false
	}
	for i := 0; i < 10; i++ {
		if i == 2 || i == 5 {
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

var metadataFields = []string{
	"mapping_version", "attack_version", "technology_domain", "creation_date", "last_update",
	"mapping_framework", "mapping_framework_version", "mapping_framework_version_schema",
	"author", "contact", "organization", "mapping_types", "capability_groups",
}

var metadataRequired = []string{
	"mapping_version", "attack_version", "technology_domain", "creation_date",
	"mapping_framework", "mapping_framework_version", "mapping_types", "capability_groups",
}

func (d *decoder) metadata(raw json.RawMessage) error {
	obj, err := d.object("metadata", raw)
	if err != nil {
		return err
	}
	if err := d.unknown("metadata.", obj, metadataFields...); err != nil {
		return err
	}
	for _, f := range metadataRequired {
		if _, ok := obj[f]; !ok {
			return d.errf("metadata."+f, "", "required field missing")
		}
	}
	md := &d.doc.Metadata
	strs := []struct {
		name     string
		dst      *string
		nullable bool
	}{
		{"mapping_version", &md.MappingVersion, false},
		{"attack_version", &md.AttackVersion, false},
		{"technology_domain", &md.TechnologyDomain, false},
		{"creation_date", &md.CreationDate, false},
		{"last_update", &md.LastUpdate, false},
		{"mapping_framework", &md.MappingFramework, false},
		{"mapping_framework_version", &md.MappingFrameworkVersion, false},
		{"mapping_framework_version_schema", &md.MappingFrameworkVersionSchema, false},
		{"author", &md.Author, true},
		{"contact", &md.Contact, true},
		{"organization", &md.Organization, true},
	}
	for _, s := range strs {
		r, ok := obj[s.name]
		if !ok {
			continue
		}
		v, err := d.str("metadata."+s.name, r, s.nullable)
		if err != nil {
			return err
		}
		*s.dst = v
	}
	if _, ok := obj["technology_domain"]; ok && !oneOf(md.TechnologyDomain, "enterprise", "mobile", "ics") {
		return d.errf("metadata.technology_domain", md.TechnologyDomain, "must be one of enterprise, mobile, ics")
	}
	for _, f := range []struct {
		name string
		v    string
	}{{"creation_date", md.CreationDate}, {"last_update", md.LastUpdate}} {
		if _, ok := obj[f.name]; ok && !isDate(f.v) {
			return d.errf("metadata."+f.name, f.v, "must be a date MM/DD/YYYY")
		}
	}
	if _, ok := obj["mapping_framework_version_schema"]; ok && !oneOf(md.MappingFrameworkVersionSchema, "FRAMEWORK_VERSION", "ACCESS_DATE") {
		return d.errf("metadata.mapping_framework_version_schema", md.MappingFrameworkVersionSchema, "must be one of FRAMEWORK_VERSION, ACCESS_DATE")
	}
	if err := d.mappingTypes(obj["mapping_types"]); err != nil {
		return err
	}
	groups, err := d.object("metadata.capability_groups", obj["capability_groups"])
	if err != nil {
		return err
	}
	md.CapabilityGroups = make(map[string]string, len(groups))
	for k, v := range groups {
		if kind(v) == "string" {
			s, _ := decodeString(v)
			md.CapabilityGroups[k] = s
		}
	}
	return nil
}

// hasLower reports whether the key matches the schema's unanchored patternProperties "[a-z]+".
func hasLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'a' && s[i] <= 'z' {
			return true
		}
	}
	return false
}

func (d *decoder) mappingTypes(raw json.RawMessage) error {
	obj, err := d.object("metadata.mapping_types", raw)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d.doc.Metadata.MappingTypes = make(map[string]MappingType, len(obj))
	for _, k := range keys {
		if !hasLower(k) {
			continue // the schema does not constrain such keys
		}
		field := "metadata.mapping_types." + k
		o, err := d.object(field, obj[k])
		if err != nil {
			return err
		}
		if err := d.unknown(field+".", o, "name", "description"); err != nil {
			return err
		}
		var mt MappingType
		for _, f := range []struct {
			name string
			dst  *string
		}{{"name", &mt.Name}, {"description", &mt.Description}} {
			r, ok := o[f.name]
			if !ok {
				return d.errf(field+"."+f.name, "", "required field missing")
			}
			if *f.dst, err = d.str(field+"."+f.name, r, false); err != nil {
				return err
			}
		}
		d.doc.Metadata.MappingTypes[k] = mt
	}
	return nil
}

var rowFields = []string{
	"author", "author_contact", "author_organization", "attack_object_id", "attack_object_name",
	"attack_version", "mapping_framework", "mapping_framework_version", "capability_id",
	"capability_description", "comments", "references", "mapping_type", "capability_group",
	"status", "technology_domain", "score_category", "score_value", "related_score",
}

// Row field indexes, in rowFields order.
const (
	fAuthor = iota
	fAuthorContact
	fAuthorOrganization
	fAttackObjectID
	fAttackObjectName
	fAttackVersion
	fMappingFramework
	fMappingFrameworkVersion
	fCapabilityID
	fCapabilityDescription
	fComments
	fReferences
	fMappingType
	fCapabilityGroup
	fStatus
	fTechnologyDomain
	fScoreCategory
	fScoreValue
	fRelatedScore
	nRowFields
)

var rowIndex = func() map[string]int {
	m := make(map[string]int, len(rowFields))
	for i, f := range rowFields {
		m[f] = i
	}
	return m
}()

func (d *decoder) mappingObject(raw json.RawMessage, r *Row) error {
	if kind(raw) != "object" {
		return d.errf("", "", "got %s, want object", kind(raw))
	}
	var vals [nRowFields]json.RawMessage
	var unknown []string
	sc := &scanner{data: raw}
	err := sc.members(func(key string) error {
		v, err := sc.value()
		if i, ok := rowIndex[key]; ok {
			vals[i] = v
		} else {
			unknown = append(unknown, key)
		}
		return err
	})
	if err != nil {
		return d.errf("", "", "%v", err)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return d.errf(unknown[0], "", "unknown field")
	}
	for _, i := range []int{fMappingType, fCapabilityGroup} {
		if vals[i] == nil {
			return d.errf(rowFields[i], "", "required field missing")
		}
	}
	dst := [nRowFields]*string{
		&r.Author, &r.AuthorContact, &r.AuthorOrganization, &r.AttackObjectID, &r.AttackObjectName,
		&r.AttackVersion, &r.MappingFramework, &r.MappingFrameworkVersion, &r.CapabilityID,
		&r.CapabilityDescription, &r.Comments, nil, &r.MappingType, &r.CapabilityGroup,
		&r.Status, &r.TechnologyDomain, &r.ScoreCategory, &r.ScoreValue, &r.RelatedScore,
	}
	for i, v := range vals {
		if v == nil || i == fReferences {
			continue
		}
		nullable := !(i == fAttackVersion || i == fMappingFramework || i == fMappingFrameworkVersion ||
			i == fStatus || i == fTechnologyDomain)
		if *dst[i], err = d.str(rowFields[i], v, nullable); err != nil {
			return err
		}
	}
	if refs := vals[fReferences]; refs != nil {
		switch kind(refs) {
		case "null":
		case "array":
			rs := &scanner{data: refs}
			err := rs.elements(func(i int) error {
				it, err := rs.value()
				if err != nil {
					return err
				}
				s, err := d.str("references["+strconv.Itoa(i)+"]", it, false)
				r.References = append(r.References, s)
				return err
			})
			if err != nil {
				return err
			}
		default:
			return d.errf("references", "", "got %s, want array or null", kind(refs))
		}
	}
	if vals[fStatus] != nil && !oneOf(r.Status, "complete", "in_progress", "non_mappable") {
		return d.errf("status", r.Status, "must be one of complete, in_progress, non_mappable")
	}
	if err := d.scoreEnum(vals[fScoreCategory], "score_category", r.ScoreCategory, "protect", "detect", "respond"); err != nil {
		return err
	}
	return d.scoreEnum(vals[fScoreValue], "score_value", r.ScoreValue, "minimal", "partial", "significant")
}

func (d *decoder) scoreEnum(raw json.RawMessage, field, v string, allowed ...string) error {
	if raw == nil || kind(raw) == "null" || oneOf(v, allowed...) {
		return nil
	}
	e := d.errf(field, v, "must be one of %s or null", strings.Join(allowed, ", "))
	if d.opts.Lenient {
		d.doc.Warnings = append(d.doc.Warnings, e)
		return nil
	}
	return e
}
