package coverage

import (
	"errors"
	"fmt"
)

// Format is the shape of a rule file.
type Format string

// The rule formats Scan recognizes.
const (
	FormatElastic         Format = "elastic"          // detection-rules TOML, [[rule.threat]]
	FormatElasticHunting  Format = "elastic-hunting"  // detection-rules hunting TOML, [hunt] mitre = [...]
	FormatElasticEndpoint Format = "elastic-endpoint" // Elastic Defend behavior TOML, top-level [[threat]]
	FormatKibanaExport    Format = "kibana-export"    // Kibana detection rules export NDJSON
	FormatSigma           Format = "sigma"            // Sigma YAML, tags attack.tNNNN
	FormatSentinel        Format = "sentinel"         // Sentinel analytic/hunting YAML, relevantTechniques
)

// Rule is one detection rule and the ATT&CK techniques it names.
type Rule struct {
	Format Format `json:"source"`
	// ID is the rule's own identifier: rule_id (Elastic, Kibana), id (Sigma, Sentinel,
	// Defend), uuid (hunting). Empty when the file has none.
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Enabled is known only for Kibana exports and Sentinel XDR detections.
	Enabled *bool  `json:"enabled,omitempty"`
	Status  string `json:"status,omitempty"` // Sigma status, Elastic maturity
	Path    string `json:"path"`
	// Line is the 1-based line of an NDJSON export; 0 for one-rule files.
	Line int `json:"line,omitempty"`
	// Techniques are the distinct normalized technique IDs the rule names, in file order.
	Techniques []string `json:"techniques"`
	// Tactics are ATT&CK tactic short names ("lateral-movement") the rule names.
	Tactics []string `json:"tactics,omitempty"`
	// TechniqueTactics are the tactics each technique is listed under, by technique ID,
	// where the format pairs them (Elastic and Kibana threat blocks, XDR alert templates).
	// Sigma and Sentinel analytic rules list tactics apart from techniques; they have none.
	TechniqueTactics map[string][]string `json:"-"`
	// Names are technique names as the rule spells them, by ID (Elastic, Kibana).
	Names map[string]string `json:"-"`
}

// key identifies a rule within a run: two files may hold the same rule_id.
func (r *Rule) key() string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d", r.Format, r.ID, r.Path, r.Line)
}

// tacticsOf returns the tactics the rule lists technique id under: the paired ones where
// the format pairs them, else every tactic the rule names.
func (r *Rule) tacticsOf(id string) []string {
	if r.TechniqueTactics != nil {
		return r.TechniqueTactics[id]
	}
	return r.Tactics
}

// ErrNotRule is returned for a file that is readable but holds no rule of a known shape
// (a README, a field list, an exception list). Scan lists such files as skipped.
var ErrNotRule = errors.New("not a rule file")

// Issue is a problem with one file (or one line of an NDJSON export).
type Issue struct {
	Path   string `json:"path"`
	Line   int    `json:"line,omitempty"`
	Reason string `json:"reason"`
}

func (i Issue) String() string {
	if i.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", i.Path, i.Line, i.Reason)
	}
	return fmt.Sprintf("%s: %s", i.Path, i.Reason)
}
