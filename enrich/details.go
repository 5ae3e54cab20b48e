package enrich

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/enricher-dev/enricher/rules"
)

// The mapping detail index holds one document per mapping of a ruleset: what the compact
// shape leaves off the alert (comments, references, provenance). Documents are keyed by
// the ruleset's hash, so a ruleset's details are written once, whoever loads it, and an
// alert's <root>.details values (DetailRef) are their `ref`.

// DetailFormat versions the detail documents (their `format` field): documents of another
// format are replaced, not kept beside them.
const DetailFormat = "1"

// DetailSource is implemented by stages whose mappings have documents in the detail index.
type DetailSource interface {
	// DetailVersion identifies the documents: the rules' hash and version.
	DetailVersion() (hash, version string)
	// EachDetail calls fn with the _id and body of every document, in a stable order,
	// and stops at fn's first error. Each body carries `ruleset.hash` and `format`
	// (DetailFormat): they are what a publication is counted and removed by.
	EachDetail(fn func(id string, doc []byte) error) error
}

var _ DetailSource = (*AttackStage)(nil)

// DetailSchema is every field of a detail document (the detail index's mapping and the
// Kibana data view over it are made from it).
var DetailSchema = []SchemaField{
	{"ref", TypeKeyword, "what alerts carry in <root>.details: `<technique>@<ruleset hash>`"},
	{"format", TypeKeyword, "version of the document's format"},
	{"ruleset", TypeObject, "the ruleset the mapping is part of"},
	{"ruleset.hash", TypeKeyword, "its content hash"},
	{"ruleset.version", TypeKeyword, "its version"},
	{"technique", TypeKeyword, "ATT&CK technique"},
	{"technique_name", TypeKeyword, "its name"},
	{"source_technique", TypeKeyword, "the technique as published, when revoked and moved"},
	{"kind", TypeKeyword, "control, detection or related"},
	{"framework", TypeKeyword, "framework, e.g. nist_800_53"},
	{"framework_version", TypeKeyword, "framework release, e.g. rev5"},
	{"release", TypeKeyword, "framework and release as alerts name it, e.g. `nist_800_53 rev5`"},
	{"attack_version", TypeKeyword, "ATT&CK version of the mapping file"},
	{"mapping_version", TypeKeyword, "version of the mapping file"},
	{"mapping_type", TypeKeyword, "canonical mapping type"},
	{"source_mapping_type", TypeKeyword, "mapping type as published"},
	{"capability_id", TypeKeyword, "canonical capability ID (control ID, product)"},
	{"source_id", TypeKeyword, "capability ID as published"},
	{"name", TypeKeyword, "control or product name"},
	{"group", TypeKeyword, "control family or group"},
	{"score_category", TypeKeyword, "protect, detect or respond"},
	{"score_value", TypeKeyword, "minimal, partial or significant"},
	{"comments", TypeText, "the mapping's comments"},
	{"references", TypeNoIndex, "reference URLs"},
	{"alerts", TypeObjectArr, "product alerts"},
	{"alerts.id", TypeKeyword, "alert ID"},
	{"alerts.name", TypeKeyword, "alert name"},
	{"queries", TypeKeyword, "hunting queries"},
	{"events", TypeObjectArr, "Windows events"},
	{"events.id", TypeKeyword, "event ID"},
	{"events.logon_type", TypeKeyword, "logon type"},
	{"also_in", TypeKeyword, "other loaded releases that publish the same mapping"},
}

// DetailVersion implements DetailSource.
func (s *AttackStage) DetailVersion() (string, string) { return s.rs.Hash(), s.rs.Version() }

// EachDetail implements DetailSource.
func (s *AttackStage) EachDetail(fn func(id string, doc []byte) error) error {
	hash, version := s.DetailVersion()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, t := range s.rs.Techniques() {
		for _, m := range s.rs.Mappings(t) {
			buf.Reset()
			if err := enc.Encode(detailDoc(m, t, hash, version, s.rs.Name(t))); err != nil {
				return err
			}
			doc := bytes.TrimSpace(buf.Bytes())
			if err := fn(detailID(hash, t, m), doc); err != nil {
				return err
			}
		}
	}
	return nil
}

// detailID is a document's _id: the ruleset's hash, the format, and what makes the
// mapping one within it (not the document's bytes: the version label is not part of the hash, and a
// ruleset published under two labels must not hold each mapping twice).
func detailID(hash, technique string, m *rules.Mapping) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{technique, string(m.Kind), m.Source.Framework, m.Source.FrameworkVersion,
		m.Source.AttackVersion, m.CapabilityID, m.ScoreCategory, m.MappingType, m.SourceTechnique}, "\x00")))
	return hash[:min(16, len(hash))] + "-" + DetailFormat + "-" + hex.EncodeToString(sum[:10])
}

func detailDoc(m *rules.Mapping, technique, hash, version, name string) map[string]any {
	d := map[string]any{
		"ref":               DetailRef(technique, hash),
		"format":            DetailFormat,
		"ruleset":           map[string]any{"hash": hash, "version": version},
		"technique":         technique,
		"kind":              string(m.Kind),
		"framework":         m.Source.Framework,
		"framework_version": m.Source.FrameworkVersion,
		"release":           releaseLabel(m.Source),
		"attack_version":    m.Source.AttackVersion,
		"mapping_type":      m.MappingType,
		"capability_id":     m.CapabilityID,
		"name":              m.Capability,
	}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	set("technique_name", name)
	set("source_technique", m.SourceTechnique)
	set("mapping_version", m.Source.MappingVersion)
	set("source_mapping_type", m.SourceMappingType)
	set("source_id", m.SourceCapabilityID)
	set("group", m.CapabilityGroup)
	set("score_category", m.ScoreCategory)
	set("score_value", m.ScoreValue)
	set("comments", m.Comments)
	if len(m.References) > 0 {
		d["references"] = m.References
	}
	if len(m.AlsoIn) > 0 {
		d["also_in"] = alsoIn(m)
	}
	addDetectionLists(d, m)
	return d
}
