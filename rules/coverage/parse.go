package coverage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/rules"
)

// syntax is the file syntax sniffed from content.
type syntax int

const (
	syntaxUnknown syntax = iota
	syntaxJSON
	syntaxTOML
	syntaxYAML
	syntaxXML
)

// sniff guesses a file's syntax from its first meaningful line, not from its name.
func sniff(data []byte) syntax {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		s := strings.TrimSpace(string(line))
		if s == "" || strings.HasPrefix(s, "#") {
			continue // comment in TOML and YAML alike
		}
		switch {
		case s[0] == '{':
			return syntaxJSON
		case s[0] == '<':
			return syntaxXML
		case s == "---" || strings.HasPrefix(s, "%YAML") || strings.HasPrefix(s, "- "):
			return syntaxYAML
		case s[0] == '[':
			if strings.HasSuffix(s, "]") && !strings.Contains(s, ",") && !strings.Contains(s, "{") {
				return syntaxTOML // [table] or [[array.of.tables]]
			}
			return syntaxJSON
		}
		key, _, _ := strings.Cut(s, "#")
		eq := strings.IndexByte(key, '=')
		colon := strings.IndexByte(key, ':')
		switch {
		case eq > 0 && (colon < 0 || eq < colon):
			return syntaxTOML
		case colon > 0:
			return syntaxYAML
		}
		return syntaxUnknown
	}
	return syntaxUnknown
}

// Parse reads the rules in one file. The format is recognized from the content. It returns
// ErrNotRule (wrapped) when the file is not a rule of a known shape, and another error when
// it looks like one but cannot be parsed. issues are per-line problems of an NDJSON export
// and values skipped because they are not technique IDs; the rules returned still count.
func Parse(path string, data []byte) (rs []Rule, issues []Issue, err error) {
	if i := bytes.IndexByte(data[:min(len(data), 8000)], 0); i >= 0 {
		return nil, nil, fmt.Errorf("%w: binary content", ErrNotRule)
	}
	syn := sniff(data)
	switch syn {
	case syntaxJSON:
		rs, issues, err = parseNDJSON(path, data)
	case syntaxTOML:
		var r Rule
		r, issues, err = parseTOML(path, data)
		if err == nil {
			rs = []Rule{r}
		}
	case syntaxYAML:
		rs, issues, err = parseYAML(path, data)
	case syntaxXML:
		return nil, nil, fmt.Errorf("%w: XML (Wazuh rules are not read)", ErrNotRule)
	default:
		return nil, nil, fmt.Errorf("%w: unrecognized content", ErrNotRule)
	}
	if err != nil && !errors.Is(err, ErrNotRule) && !hasRuleMarker(syn, data) {
		// A syntax error in a file with none of the keys rules have (Markdown that
		// sniffs as YAML, a JSON array of something else) is not a broken rule.
		return nil, nil, fmt.Errorf("%w: %v", ErrNotRule, err)
	}
	return rs, issues, err
}

// ruleMarkers are keys only rule files carry, by syntax.
var ruleMarkers = map[syntax][]string{
	syntaxJSON: {`"rule_id"`},
	syntaxTOML: {"[rule]", "[hunt]", "[[threat]]", "[[rule.threat]]", "rule_id"},
	syntaxYAML: {"\ndetection:", "\nlogsource:", "\nrelevantTechniques:", "\ncorrelation:", "CustomDetection"},
}

func hasRuleMarker(syn syntax, data []byte) bool {
	for _, m := range ruleMarkers[syn] {
		if bytes.Contains(data, []byte(m)) {
			return true
		}
	}
	return false
}

// techniques collects and normalizes technique IDs for one rule.
type techniques struct {
	rule   *Rule
	issues []Issue
}

// add records a technique the rule names and returns its normalized ID, or "" when id
// is empty or not a technique ID (then a warning is recorded).
func (t *techniques) add(id, name string) string {
	n := rules.NormalizeTechniqueID(id)
	if n == "" {
		return ""
	}
	if !rules.IsTechniqueID(n) {
		t.issues = append(t.issues, Issue{Path: t.rule.Path, Line: t.rule.Line,
			Reason: fmt.Sprintf("rule %q: %q is not an ATT&CK technique ID (skipped)", t.rule.label(), id)})
		return ""
	}
	if slices.Contains(t.rule.Techniques, n) {
		return n
	}
	t.rule.Techniques = append(t.rule.Techniques, n)
	if name = strings.TrimSpace(name); name != "" {
		if t.rule.Names == nil {
			t.rule.Names = map[string]string{}
		}
		t.rule.Names[n] = name
	}
	return n
}

// tactic records a tactic the rule names and returns its short name ("" when none).
func (t *techniques) tactic(name string) string {
	s := tacticShortName(name)
	if s != "" && !slices.Contains(t.rule.Tactics, s) {
		t.rule.Tactics = append(t.rule.Tactics, s)
	}
	return s
}

// addUnder records a technique named under one tactic (a threat block, an XDR tactic).
func (t *techniques) addUnder(tactic, id, name string) {
	n := t.add(id, name)
	if n == "" || tactic == "" {
		return
	}
	if t.rule.TechniqueTactics == nil {
		t.rule.TechniqueTactics = map[string][]string{}
	}
	if !slices.Contains(t.rule.TechniqueTactics[n], tactic) {
		t.rule.TechniqueTactics[n] = append(t.rule.TechniqueTactics[n], tactic)
	}
}

func (r *Rule) label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.ID
}

// tacticShortName turns "Lateral Movement", "LateralMovement", "lateral_movement" into
// the ATT&CK short name "lateral-movement".
func tacticShortName(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		switch {
		case r == ' ' || r == '_' || r == '-':
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
			prevLower = false
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('-')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		default:
			b.WriteRune(r)
			prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
		}
	}
	return strings.Trim(b.String(), "-")
}

// threat is the ATT&CK block shared by detection-rules TOML, Defend TOML and Kibana exports.
type threat struct {
	Framework string `toml:"framework" json:"framework"`
	Tactic    struct {
		ID   string `toml:"id" json:"id"`
		Name string `toml:"name" json:"name"`
	} `toml:"tactic" json:"tactic"`
	Technique []struct {
		ID           string `toml:"id" json:"id"`
		Name         string `toml:"name" json:"name"`
		Subtechnique []struct {
			ID   string `toml:"id" json:"id"`
			Name string `toml:"name" json:"name"`
		} `toml:"subtechnique" json:"subtechnique"`
	} `toml:"technique" json:"technique"`
}

func (t *techniques) threats(ts []threat) {
	for _, th := range ts {
		if f := strings.ToUpper(th.Framework); f != "" && !strings.Contains(f, "ATT&CK") && !strings.Contains(f, "ATTACK") {
			continue // MITRE ATLAS and other frameworks are not ATT&CK
		}
		tactic := t.tactic(th.Tactic.Name)
		for _, tech := range th.Technique {
			t.addUnder(tactic, tech.ID, tech.Name)
			for _, sub := range tech.Subtechnique {
				t.addUnder(tactic, sub.ID, sub.Name)
			}
		}
	}
}

type tomlFile struct {
	Metadata struct {
		Maturity string `toml:"maturity"`
	} `toml:"metadata"`
	Rule *struct {
		RuleID  string   `toml:"rule_id"`
		ID      string   `toml:"id"`
		Name    string   `toml:"name"`
		Enabled *bool    `toml:"enabled"`
		Threat  []threat `toml:"threat"`
	} `toml:"rule"`
	Hunt *struct {
		UUID  string   `toml:"uuid"`
		Name  string   `toml:"name"`
		Mitre []string `toml:"mitre"`
	} `toml:"hunt"`
	Threat []threat `toml:"threat"`
}

func parseTOML(path string, data []byte) (Rule, []Issue, error) {
	var f tomlFile
	if _, err := toml.Decode(string(data), &f); err != nil {
		return Rule{}, nil, fmt.Errorf("parse TOML: %w", err)
	}
	r := Rule{Path: path}
	t := techniques{rule: &r}
	switch {
	case f.Rule != nil && f.Rule.RuleID != "":
		r.Format, r.ID, r.Name, r.Enabled, r.Status = FormatElastic, f.Rule.RuleID, f.Rule.Name, f.Rule.Enabled, f.Metadata.Maturity
		t.threats(f.Rule.Threat)
	case f.Hunt != nil:
		r.Format, r.ID, r.Name = FormatElasticHunting, f.Hunt.UUID, f.Hunt.Name
		for _, id := range f.Hunt.Mitre {
			t.add(id, "")
		}
	case len(f.Threat) > 0 || (f.Rule != nil && f.Rule.ID != ""):
		r.Format = FormatElasticEndpoint
		if f.Rule != nil {
			r.ID, r.Name = f.Rule.ID, f.Rule.Name
		}
		t.threats(f.Threat)
	default:
		return Rule{}, nil, fmt.Errorf("%w: TOML without [rule] rule_id, [hunt] or [[threat]]", ErrNotRule)
	}
	if r.Name == "" {
		return Rule{}, nil, fmt.Errorf("%s rule has no name", r.Format)
	}
	return r, t.issues, nil
}

// kibanaRule is one line of a Kibana detection rules export.
type kibanaRule struct {
	RuleID        string   `json:"rule_id"`
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Enabled       *bool    `json:"enabled"`
	Threat        []threat `json:"threat"`
	ExportedCount *int     `json:"exported_count"`
}

// parseNDJSON reads a Kibana export: one rule object a line, an export-summary object last,
// possibly exception lists in between. A bad line is reported and the others still count.
// A single pretty-printed rule object is read too.
func parseNDJSON(path string, data []byte) ([]Rule, []Issue, error) {
	var out []Rule
	var issues []Issue
	lines := bytes.Split(data, []byte("\n"))
	bad := 0
	nonEmpty := 0
	for i, line := range lines {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		nonEmpty++
		var kr kibanaRule
		if err := json.Unmarshal(line, &kr); err != nil {
			bad++
			issues = append(issues, Issue{Path: path, Line: i + 1, Reason: "parse JSON: " + err.Error()})
			continue
		}
		r, iss, ok := kr.rule(path, i+1)
		if ok {
			out = append(out, r)
			issues = append(issues, iss...)
		}
	}
	if bad == nonEmpty && bad > 0 {
		// Not NDJSON: maybe one multi-line JSON object (or a stream of them).
		out, issues = nil, nil
		dec := json.NewDecoder(bytes.NewReader(data))
		for n := 1; ; n++ {
			var kr kibanaRule
			err := dec.Decode(&kr)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("parse JSON: %w", err)
			}
			if r, iss, ok := kr.rule(path, 0); ok {
				out = append(out, r)
				issues = append(issues, iss...)
			}
		}
	}
	if len(out) == 0 {
		if len(issues) > 0 {
			return nil, nil, fmt.Errorf("no readable rule: %s", issues[0].Reason)
		}
		return nil, nil, fmt.Errorf("%w: JSON without rule_id objects", ErrNotRule)
	}
	return out, issues, nil
}

func (kr *kibanaRule) rule(path string, line int) (Rule, []Issue, bool) {
	if kr.ExportedCount != nil || kr.RuleID == "" {
		return Rule{}, nil, false // export summary, exception list or list item
	}
	r := Rule{Format: FormatKibanaExport, ID: kr.RuleID, Name: kr.Name, Enabled: kr.Enabled, Path: path, Line: line}
	t := techniques{rule: &r}
	t.threats(kr.Threat)
	return r, t.issues, true
}

// parseYAML reads Sigma and Sentinel rules. A file may hold several YAML documents
// (a Sigma rule and its correlation); each document with a title or name is a rule.
func parseYAML(path string, data []byte) ([]Rule, []Issue, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []Rule
	var issues []Issue
	for doc := 1; ; doc++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(out) == 0 && doc == 1 {
				return nil, nil, fmt.Errorf("parse YAML: %w", err)
			}
			return nil, nil, fmt.Errorf("parse YAML document %d: %w", doc, err)
		}
		if m == nil {
			continue
		}
		r, iss, ok := yamlRule(path, m)
		if ok {
			out = append(out, r)
			issues = append(issues, iss...)
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("%w: YAML that is neither a Sigma nor a Sentinel rule", ErrNotRule)
	}
	return out, issues, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func yamlRule(path string, m map[string]any) (Rule, []Issue, bool) {
	r := Rule{Path: path}
	t := techniques{rule: &r}
	_, hasDetection := m["detection"]
	_, hasCorrelation := m["correlation"]
	_, hasLogsource := m["logsource"]
	props, _ := m["properties"].(map[string]any)
	switch {
	case m["title"] != nil && (hasDetection || hasCorrelation || hasLogsource):
		r.Format, r.ID, r.Name, r.Status = FormatSigma, str(m["id"]), str(m["title"]), str(m["status"])
		for _, v := range list(m["tags"]) {
			tag := strings.ToLower(strings.TrimSpace(str(v)))
			name, ok := strings.CutPrefix(tag, "attack.")
			if !ok {
				continue
			}
			switch {
			case len(name) > 1 && name[0] == 't' && name[1] >= '0' && name[1] <= '9':
				t.add(name, "")
			case len(name) > 1 && (name[0] == 'g' || name[0] == 's') && name[1] >= '0' && name[1] <= '9':
				// groups and software
			default:
				t.tactic(name)
			}
		}
	case m["relevantTechniques"] != nil || (m["name"] != nil && m["query"] != nil && m["tactics"] != nil):
		r.Format, r.ID, r.Name = FormatSentinel, str(m["id"]), str(m["name"])
		for _, v := range list(m["tactics"]) {
			t.tactic(str(v))
		}
		for _, v := range list(m["relevantTechniques"]) {
			t.add(str(v), "")
		}
	case props != nil && str(m["kind"]) == "CustomDetection":
		r.Format, r.ID, r.Name = FormatSentinel, str(props["id"]), str(props["displayName"])
		if s := str(props["status"]); s != "" {
			enabled := strings.EqualFold(s, "enabled")
			r.Enabled = &enabled
		}
		da, _ := props["detectionAction"].(map[string]any)
		at, _ := da["alertTemplate"].(map[string]any)
		for _, v := range list(at["tactics"]) {
			tm, _ := v.(map[string]any)
			tactic := t.tactic(str(tm["tactic"]))
			for _, tv := range list(tm["techniques"]) {
				te, _ := tv.(map[string]any)
				t.addUnder(tactic, str(te["technique"]), "")
				for _, s := range list(te["subTechniques"]) {
					t.addUnder(tactic, str(s), "")
				}
			}
		}
	default:
		return Rule{}, nil, false
	}
	return r, t.issues, true
}
