package rules

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/enricher-dev/enricher/rules/ctid"
	"github.com/enricher-dev/enricher/rules/internal/safeio"
)

// DecodeSource decodes one mapping file: CTID unified JSON when data is a JSON object
// (or name ends in .json), the rules YAML format otherwise. name is used in errors.
func DecodeSource(name string, data []byte) (*File, error) {
	return DecodeSourceReader(context.Background(), name, bytes.NewReader(data))
}

// DecodeSourceReader is DecodeSource reading from r. CTID JSON is decoded one row at a time
// (see ctid.DecodeReader), so only the converted mappings are kept; a rules YAML file is read
// whole, and refused when larger than MaxYAMLBytes.
func DecodeSourceReader(ctx context.Context, name string, r io.Reader) (*File, error) {
	br := bufio.NewReaderSize(r, 4096)
	if isJSON(name, br) {
		return decodeCTID(ctx, name, br)
	}
	data, err := safeio.ReadAll(name, br, MaxYAMLBytes, 0)
	if errors.Is(err, safeio.ErrTooLarge) {
		return nil, &ContentError{File: name, Err: fmt.Errorf("larger than the %s limit of a rules YAML file", safeio.Size(MaxYAMLBytes))}
	}
	if err != nil {
		return nil, err
	}
	return DecodeFile(name, data)
}

// isJSON says whether a source is CTID JSON: its name ends in .json, or its first character
// after white space (and a byte order mark) is '{'.
func isJSON(name string, br *bufio.Reader) bool {
	if strings.HasSuffix(strings.ToLower(name), ".json") {
		return true
	}
	head, _ := br.Peek(512)
	head = bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(head) > 0 && head[0] == '{'
}

// DecodeCTID validates a CTID Mappings Explorer file (unified format) and converts it to
// the rules format. Rows with a null or non_mappable mapping type, a non_mappable status,
// no capability_id or no attack_object_id are left out and counted in Source.Skipped.
// Values outside the schema's score enums are kept (Build reports them as unknown).
// Errors are *ContentError naming the file, the row (1-based index in mapping_objects)
// and the field.
func DecodeCTID(name string, data []byte) (*File, error) {
	return decodeCTID(context.Background(), name, bytes.NewReader(data))
}

func decodeCTID(ctx context.Context, name string, r io.Reader) (*File, error) {
	f := &File{}
	c := newCTIDConverter(name, func(m *FileMapping) error {
		f.Mappings = append(f.Mappings, *m)
		return nil
	})
	src, err := c.decode(ctx, r)
	if err != nil {
		return nil, err
	}
	f.Source = *src
	return f, nil
}

// reCTIDName matches CTID's file names: FRAMEWORK-VERSION_attack-ATTACK-DOMAIN.json.
var reCTIDName = regexp.MustCompile(`^([a-z0-9_]+)-(.+)_attack-([0-9.]+)-([a-z]+)\.json$`)

// FromCTID converts a decoded CTID document; name is the file's path or URL.
func FromCTID(name string, doc *ctid.Document) (*File, error) {
	f := &File{Mappings: make([]FileMapping, 0, len(doc.Rows))}
	c := newCTIDConverter(name, func(m *FileMapping) error {
		f.Mappings = append(f.Mappings, *m)
		return nil
	})
	for i := range doc.Rows {
		if err := c.row(i+1, &doc.Rows[i]); err != nil {
			return nil, err
		}
	}
	src, err := c.source(doc)
	if err != nil {
		return nil, err
	}
	f.Source = *src
	return f, nil
}

// ctidConverter turns CTID rows into mappings one at a time and works out the Source.
type ctidConverter struct {
	name string
	emit func(*FileMapping) error
	rows int
	// first non-empty values of the rows, for a file without metadata
	framework, frameworkVersion, attackVersion, domain string
	skipped                                            map[string]int
}

func newCTIDConverter(name string, emit func(*FileMapping) error) *ctidConverter {
	return &ctidConverter{name: name, emit: emit}
}

// decode streams a CTID file from r through the converter and returns its Source.
func (c *ctidConverter) decode(ctx context.Context, r io.Reader) (*Source, error) {
	doc, err := ctid.DecodeReader(ctx, c.name, r, ctid.Options{Lenient: true}, c.row)
	if err != nil {
		var ce *ctid.Error
		if errors.As(err, &ce) {
			return nil, &ContentError{File: ce.File, Row: ce.Row, Field: ce.Field, Value: ce.Value, Err: errors.New(ce.Msg)}
		}
		var cerr *ContentError
		if errors.As(err, &cerr) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", c.name, err)
	}
	return c.source(doc)
}

func (c *ctidConverter) row(row int, r *ctid.Row) error {
	c.rows++
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&c.framework, r.MappingFramework}, {&c.frameworkVersion, r.MappingFrameworkVersion},
		{&c.attackVersion, r.AttackVersion}, {&c.domain, r.TechnologyDomain},
	} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	skip := func(reason string) error {
		if c.skipped == nil {
			c.skipped = map[string]int{}
		}
		c.skipped[reason]++
		return nil
	}
	mt := strings.TrimSpace(r.MappingType)
	switch {
	case mt == "":
		return skip(SkipNullMappingType)
	case strings.EqualFold(mt, "non_mappable") || r.Status == "non_mappable":
		return skip(SkipNonMappable)
	case strings.TrimSpace(r.CapabilityID) == "":
		return skip(SkipNoCapability)
	case strings.TrimSpace(r.AttackObjectID) == "":
		return skip(SkipNoTechnique)
	}
	if id := NormalizeTechniqueID(r.AttackObjectID); !IsTechniqueID(id) {
		return &ContentError{File: c.name, Row: row, Field: "attack_object_id", Value: r.AttackObjectID,
			Err: errors.New("not an ATT&CK technique ID (want T1234 or T1234.567)")}
	}
	if r.RelatedScore != "" && !IsTechniqueID(NormalizeTechniqueID(r.RelatedScore)) {
		return &ContentError{File: c.name, Row: row, Field: "related_score", Value: r.RelatedScore,
			Err: errors.New("not an ATT&CK technique ID (want the parent technique, T1234)")}
	}
	return c.emit(&FileMapping{
		Technique:       r.AttackObjectID,
		TechniqueName:   r.AttackObjectName,
		CapabilityID:    r.CapabilityID,
		Capability:      r.CapabilityDescription,
		CapabilityGroup: r.CapabilityGroup,
		MappingType:     r.MappingType,
		ScoreCategory:   r.ScoreCategory,
		ScoreValue:      r.ScoreValue,
		RelatedScore:    r.RelatedScore,
		Comments:        r.Comments,
		References:      r.References,
		Row:             row,
	})
}

// source builds the Source from the metadata, falling back on the rows and then the file
// name (the schema lets a file leave out metadata).
func (c *ctidConverter) source(doc *ctid.Document) (*Source, error) {
	md := doc.Metadata
	src := &Source{
		Framework:        md.MappingFramework,
		FrameworkVersion: md.MappingFrameworkVersion,
		AttackVersion:    md.AttackVersion,
		MappingVersion:   md.MappingVersion,
		Domain:           md.TechnologyDomain,
		CreationDate:     md.CreationDate,
		LastUpdate:       md.LastUpdate,
		Origin:           c.name,
		Path:             c.name,
		Rows:             c.rows,
		Skipped:          c.skipped,
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&src.Framework, c.framework}, {&src.FrameworkVersion, c.frameworkVersion},
		{&src.AttackVersion, c.attackVersion}, {&src.Domain, c.domain},
	} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	if m := reCTIDName.FindStringSubmatch(path.Base(strings.ReplaceAll(c.name, "\\", "/"))); m != nil {
		for i, dst := range []*string{&src.Framework, &src.FrameworkVersion, &src.AttackVersion, &src.Domain} {
			if *dst == "" {
				*dst = m[i+1]
			}
		}
	}
	if src.Framework == "" && c.rows > 0 {
		return nil, &ContentError{File: c.name, Field: "metadata.mapping_framework",
			Err: errors.New("no framework in metadata, rows or file name")}
	}
	return src, nil
}
