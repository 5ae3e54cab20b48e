package enrich

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/enricher-dev/enricher/rules"
)

// FieldKind says how the values of a technique field are read.
type FieldKind string

// Field kinds.
const (
	// FieldID holds ATT&CK IDs as they are: "T1021.002".
	FieldID FieldKind = "id"
	// FieldTag holds Sigma-style tags: "attack.t1021.002"; other tags are ignored.
	FieldTag FieldKind = "tag"
)

// Field is one place in an alert where ATT&CK technique IDs are found.
type Field struct {
	Path string    `yaml:"path" json:"path"`
	Kind FieldKind `yaml:"kind" json:"kind"`
}

// DefaultFields are the places real alerts carry technique IDs: Kibana detection alerts,
// ECS threat.* (Elastic Defend, Defender XDR), Wazuh 4.x alerts (rule.mitre.id), Wazuh 5
// findings (wazuh.rule.mitre.technique.id, and Sigma-style wazuh.rule.tags), and
// Sigma-style tags.
var DefaultFields = []Field{
	{Path: "kibana.alert.rule.threat.technique.id", Kind: FieldID},
	{Path: "kibana.alert.rule.threat.technique.subtechnique.id", Kind: FieldID},
	{Path: "threat.technique.id", Kind: FieldID},
	{Path: "threat.technique.subtechnique.id", Kind: FieldID},
	{Path: "rule.mitre.id", Kind: FieldID},
	{Path: "tags", Kind: FieldTag},
	{Path: "kibana.alert.rule.tags", Kind: FieldTag},
	{Path: "wazuh.rule.mitre.technique.id", Kind: FieldID},
	{Path: "wazuh.rule.tags", Kind: FieldTag},
}

// Problem reasons: low-cardinality, used as metric label values.
const (
	ReasonWrongType    = "wrong_type"
	ReasonNotTechnique = "not_technique_id"
	// ReasonTooMany: the alert carries more distinct technique IDs than MaxTechniqueIDs;
	// the rest are not looked up.
	ReasonTooMany = "too_many_techniques"
	// ReasonTruncated: more values were skipped than MaxProblems; Value says how many
	// more.
	ReasonTruncated = "problems_truncated"
)

// Problem is a value in a technique field that could not be read as an ATT&CK ID.
// The value is skipped; valid IDs elsewhere on the alert still count.
type Problem struct {
	Field  string `json:"field"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s", p.Field, p.Value, p.Reason)
}

// ExtractTechniques returns the distinct, normalized technique IDs found in src at the
// given fields, and the values that were skipped. For repeated use, build an Extractor once.
func ExtractTechniques(src map[string]any, fields []Field) (ids []string, problems []Problem) {
	return NewExtractor(fields).Extract(src)
}

// ReadTechnique reads a technique ID from one string value of a technique field of that
// kind, as the ATT&CK stage does; ok is false when the value names none.
func ReadTechnique(value string, kind FieldKind) (id string, ok bool) {
	id, ok, _ = readID(value, kind)
	return id, ok
}

// readID reads one string value of a technique field. ok: a technique ID; problem: a value
// that should have been one and is not. Tags that are not ATT&CK technique tags are neither.
func readID(s string, kind FieldKind) (id string, ok, problem bool) {
	if kind == FieldTag {
		t := strings.TrimSpace(s)
		if len(t) < 8 || !strings.EqualFold(t[:8], "attack.t") {
			return "", false, false // tactic tags, unrelated tags
		}
		s = t[len("attack."):]
	}
	id = rules.NormalizeTechniqueID(s)
	if rules.IsTechniqueID(id) {
		return id, true, false
	}
	if kind == FieldTag && !looksLikeTechnique(id) {
		return "", false, false // attack.ta0008-style tactic tags
	}
	return "", false, true
}

func looksLikeTechnique(s string) bool {
	return len(s) > 1 && s[0] == 'T' && s[1] >= '0' && s[1] <= '9'
}

func appendUnique(ids []string, id string) []string {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

// short renders a skipped value for a report, at most 80 bytes.
func short(v any) string {
	var s string
	if str, ok := v.(string); ok {
		s = str
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
