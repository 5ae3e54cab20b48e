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
// ECS threat.* (Elastic Defend, Defender XDR), Wazuh, and Sigma-style tags.
var DefaultFields = []Field{
	{Path: "kibana.alert.rule.threat.technique.id", Kind: FieldID},
	{Path: "kibana.alert.rule.threat.technique.subtechnique.id", Kind: FieldID},
	{Path: "threat.technique.id", Kind: FieldID},
	{Path: "threat.technique.subtechnique.id", Kind: FieldID},
	{Path: "rule.mitre.id", Kind: FieldID},
	{Path: "tags", Kind: FieldTag},
	{Path: "kibana.alert.rule.tags", Kind: FieldTag},
}

// Problem reasons: low-cardinality, used as metric label values.
const (
	ReasonWrongType    = "wrong_type"
	ReasonNotTechnique = "not_technique_id"
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
// given fields, in the order found, and the values that were skipped.
func ExtractTechniques(src map[string]any, fields []Field) (ids []string, problems []Problem) {
	for _, f := range fields {
		for _, v := range Values(src, f.Path) {
			s, ok := v.(string)
			if !ok {
				if v == nil {
					continue
				}
				problems = append(problems, Problem{Field: f.Path, Value: short(v), Reason: ReasonWrongType})
				continue
			}
			if f.Kind == FieldTag {
				t := strings.ToLower(strings.TrimSpace(s))
				if !strings.HasPrefix(t, "attack.t") {
					continue // tactic tags, unrelated tags
				}
				s = t[len("attack."):]
			}
			id := rules.NormalizeTechniqueID(s)
			if !rules.IsTechniqueID(id) {
				if f.Kind == FieldTag && !looksLikeTechnique(id) {
					continue // attack.t0800-style ICS or group tags are not ours to judge
				}
				problems = append(problems, Problem{Field: f.Path, Value: short(v), Reason: ReasonNotTechnique})
				continue
			}
			ids = appendUnique(ids, id)
		}
	}
	return ids, problems
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
