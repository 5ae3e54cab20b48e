package rules

import (
	"bytes"
	"errors"
	"path"
	"regexp"
	"strings"

	"github.com/enricher-dev/enricher/rules/ctid"
)

// DecodeSource decodes one mapping file: CTID unified JSON when data is a JSON object
// (or name ends in .json), the rules YAML format otherwise. name is used in errors.
func DecodeSource(name string, data []byte) (*File, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if strings.HasSuffix(strings.ToLower(name), ".json") || (len(trimmed) > 0 && trimmed[0] == '{') {
		return DecodeCTID(name, data)
	}
	return DecodeFile(name, data)
}

// DecodeCTID validates a CTID Mappings Explorer file (unified format) and converts it to
// the rules format. Rows with a null or non_mappable mapping type, a non_mappable status,
// no capability_id or no attack_object_id are left out and counted in Source.Skipped.
// Values outside the schema's score enums are kept (Build reports them as unknown).
// Errors are *ContentError naming the file, the row (1-based index in mapping_objects)
// and the field.
func DecodeCTID(name string, data []byte) (*File, error) {
	doc, err := ctid.Decode(name, data, ctid.Options{Lenient: true})
	if err != nil {
		var ce *ctid.Error
		if errors.As(err, &ce) {
			return nil, &ContentError{File: ce.File, Row: ce.Row, Field: ce.Field, Value: ce.Value, Err: errors.New(ce.Msg)}
		}
		return nil, &ContentError{File: name, Err: err}
	}
	return FromCTID(name, doc)
}

// reCTIDName matches CTID's file names: FRAMEWORK-VERSION_attack-ATTACK-DOMAIN.json.
var reCTIDName = regexp.MustCompile(`^([a-z0-9_]+)-(.+)_attack-([0-9.]+)-([a-z]+)\.json$`)

// FromCTID converts a decoded CTID document; name is the file's path or URL.
func FromCTID(name string, doc *ctid.Document) (*File, error) {
	md := doc.Metadata
	src := Source{
		Framework:        md.MappingFramework,
		FrameworkVersion: md.MappingFrameworkVersion,
		AttackVersion:    md.AttackVersion,
		MappingVersion:   md.MappingVersion,
		Domain:           md.TechnologyDomain,
		CreationDate:     md.CreationDate,
		LastUpdate:       md.LastUpdate,
		Origin:           name,
		Path:             name,
		Rows:             len(doc.Rows),
	}
	// The schema lets a file leave out metadata; fall back on the rows, then the file name.
	for _, r := range doc.Rows {
		if src.Framework == "" {
			src.Framework = r.MappingFramework
		}
		if src.FrameworkVersion == "" {
			src.FrameworkVersion = r.MappingFrameworkVersion
		}
		if src.AttackVersion == "" {
			src.AttackVersion = r.AttackVersion
		}
		if src.Domain == "" {
			src.Domain = r.TechnologyDomain
		}
	}
	if m := reCTIDName.FindStringSubmatch(path.Base(strings.ReplaceAll(name, "\\", "/"))); m != nil {
		if src.Framework == "" {
			src.Framework = m[1]
		}
		if src.FrameworkVersion == "" {
			src.FrameworkVersion = m[2]
		}
		if src.AttackVersion == "" {
			src.AttackVersion = m[3]
		}
		if src.Domain == "" {
			src.Domain = m[4]
		}
	}
	if src.Framework == "" && len(doc.Rows) > 0 {
		return nil, &ContentError{File: name, Field: "metadata.mapping_framework",
			Err: errors.New("no framework in metadata, rows or file name")}
	}
	f := &File{Source: src, Mappings: make([]FileMapping, 0, len(doc.Rows))}
	skip := func(reason string) {
		if f.Source.Skipped == nil {
			f.Source.Skipped = map[string]int{}
		}
		f.Source.Skipped[reason]++
	}
	for i, r := range doc.Rows {
		row := i + 1
		mt := strings.TrimSpace(r.MappingType)
		switch {
		case mt == "":
			skip(SkipNullMappingType)
			continue
		case strings.EqualFold(mt, "non_mappable") || r.Status == "non_mappable":
			skip(SkipNonMappable)
			continue
		case strings.TrimSpace(r.CapabilityID) == "":
			skip(SkipNoCapability)
			continue
		case strings.TrimSpace(r.AttackObjectID) == "":
			skip(SkipNoTechnique)
			continue
		}
		if id := NormalizeTechniqueID(r.AttackObjectID); !IsTechniqueID(id) {
			return nil, &ContentError{File: name, Row: row, Field: "attack_object_id", Value: r.AttackObjectID,
				Err: errors.New("not an ATT&CK technique ID (want T1234 or T1234.567)")}
		}
		if r.RelatedScore != "" && !IsTechniqueID(NormalizeTechniqueID(r.RelatedScore)) {
			return nil, &ContentError{File: name, Row: row, Field: "related_score", Value: r.RelatedScore,
				Err: errors.New("not an ATT&CK technique ID (want the parent technique, T1234)")}
		}
		f.Mappings = append(f.Mappings, FileMapping{
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
	return f, nil
}
