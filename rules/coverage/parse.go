package coverage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
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
// and values skipped because they are not technique IDs or not of the expected type; the
// rules returned still count. The limits above apply (see MaxRuleFileBytes).
func Parse(path string, data []byte) (rs []Rule, issues []Issue, err error) {
	return parse(context.Background(), path, data)
}

func parse(ctx context.Context, path string, data []byte) (rs []Rule, issues []Issue, err error) {
	if i := bytes.IndexByte(data[:min(len(data), 8000)], 0); i >= 0 {
		return nil, nil, fmt.Errorf("%w: binary content", ErrNotRule)
	}
	syn := sniff(data)
	if syn != syntaxJSON && len(data) > MaxRuleFileBytes {
		if !hasRuleMarker(syn, data) {
			return nil, nil, fmt.Errorf("%w: larger than %d bytes and no rule keys", ErrNotRule, MaxRuleFileBytes)
		}
		return nil, nil, fmt.Errorf("larger than the %d-byte limit of a TOML or YAML rule file", MaxRuleFileBytes)
	}
	switch syn {
	case syntaxJSON:
		rs, issues, err = parseJSON(ctx, path, data)
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
	var le *limitError
	if err != nil && !errors.Is(err, ErrNotRule) && !errors.As(err, &le) && !hasRuleMarker(syn, data) {
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

// warnf records a problem with a value of the rule that is skipped; the rule still counts.
func (t *techniques) warnf(format string, args ...any) {
	t.issues = append(t.issues, Issue{Path: t.rule.Path, Line: t.rule.Line,
		Reason: fmt.Sprintf("rule %q: ", t.rule.label()) + fmt.Sprintf(format, args...)})
}

// The rule formats decode into generic values (map[string]any, []any, strings, numbers) so
// that a value of the wrong type is a warning naming its field, not a decoder error naming
// Go types. These helpers read them.

// typeName says what a decoded value is, for messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "true/false"
	case map[string]any, map[any]any:
		return "a map"
	case []any, []map[string]any:
		return "a list"
	case json.Number, int, int64, uint64, float64:
		return "a number"
	}
	return "a date or time"
}

// str returns a scalar as text ("" for nothing); ok is false for a list or a map.
func str(v any) (s string, ok bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case map[string]any, map[any]any, []any, []map[string]any:
		return "", false
	}
	return fmt.Sprint(v), true
}

// text is str that warns about a list or a map in field.
func (t *techniques) text(field string, v any) string {
	s, ok := str(v)
	if !ok {
		t.warnf("%s: want text, got %s (ignored)", field, typeName(v))
	}
	return s
}

// asMap returns a map value, or nil (with a warning) for anything else but nothing.
func (t *techniques) asMap(field string, v any) map[string]any {
	switch m := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return m
	}
	t.warnf("%s: want a map, got %s (ignored)", field, typeName(v))
	return nil
}

// list returns a list value. A single string is read as a one-item list, with a warning:
// Sigma's tags, for one, must be a list, and a string there is a common slip.
func (t *techniques) list(field string, v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	case []map[string]any: // TOML arrays of tables
		out := make([]any, len(l))
		for i, m := range l {
			out[i] = m
		}
		return out
	case string:
		t.warnf("%s is a string, not a list: read as one item", field)
		return []any{l}
	}
	t.warnf("%s: want a list, got %s (ignored)", field, typeName(v))
	return nil
}

// maps returns a list of maps (threat blocks and their techniques), warning about anything
// else; unlike list, it does not read a single string as an item.
func (t *techniques) maps(field string, v any) []map[string]any {
	if _, ok := v.(string); ok {
		t.warnf("%s: want a list of maps, got a string (ignored)", field)
		return nil
	}
	var out []map[string]any
	for i, it := range t.list(field, v) {
		if m := t.asMap(fmt.Sprintf("%s[%d]", field, i), it); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// strings returns the text items of a list, warning about items that are not text.
func (t *techniques) strings(field string, v any) []string {
	var out []string
	for i, it := range t.list(field, v) {
		s, ok := str(it)
		if !ok {
			t.warnf("%s[%d]: want text, got %s (skipped)", field, i, typeName(it))
			continue
		}
		out = append(out, s)
	}
	return out
}

// threats reads the ATT&CK threat blocks shared by detection-rules TOML, Defend TOML and
// Kibana exports: [{framework, tactic: {id, name}, technique: [{id, name, subtechnique: [...]}]}].
func (t *techniques) threats(field string, v any) {
	for i, th := range t.maps(field, v) {
		at := fmt.Sprintf("%s[%d]", field, i)
		if f := strings.ToUpper(t.text(at+".framework", th["framework"])); f != "" && !strings.Contains(f, "ATT&CK") && !strings.Contains(f, "ATTACK") {
			continue // MITRE ATLAS and other frameworks are not ATT&CK
		}
		tac := t.asMap(at+".tactic", th["tactic"])
		tactic := t.tactic(t.text(at+".tactic.name", tac["name"]))
		for j, tech := range t.maps(at+".technique", th["technique"]) {
			tat := fmt.Sprintf("%s.technique[%d]", at, j)
			t.addUnder(tactic, t.text(tat+".id", tech["id"]), t.text(tat+".name", tech["name"]))
			for k, sub := range t.maps(tat+".subtechnique", tech["subtechnique"]) {
				sat := fmt.Sprintf("%s.subtechnique[%d]", tat, k)
				t.addUnder(tactic, t.text(sat+".id", sub["id"]), t.text(sat+".name", sub["name"]))
			}
		}
	}
}

func parseTOML(path string, data []byte) (Rule, []Issue, error) {
	data = bomless(data)
	if err := checkTOML(data); err != nil {
		return Rule{}, nil, err
	}
	release := budget.acquire(int64(len(data)))
	var doc map[string]any
	_, err := toml.Decode(string(data), &doc)
	release()
	if err != nil {
		return Rule{}, nil, fmt.Errorf("parse TOML: %w", err)
	}
	r := Rule{Path: path}
	t := techniques{rule: &r}
	rule, _ := doc["rule"].(map[string]any)
	hunt, _ := doc["hunt"].(map[string]any)
	meta, _ := doc["metadata"].(map[string]any)
	get := func(m map[string]any, field, key string) string {
		if m == nil {
			return ""
		}
		return t.text(field+"."+key, m[key])
	}
	switch {
	case rule != nil && get(rule, "rule", "rule_id") != "":
		r.Format, r.ID, r.Name = FormatElastic, get(rule, "rule", "rule_id"), get(rule, "rule", "name")
		r.Status = get(meta, "metadata", "maturity")
		if v, ok := rule["enabled"]; ok {
			if b, ok := v.(bool); ok {
				r.Enabled = &b
			} else {
				t.warnf("rule.enabled: want true or false, got %s (ignored)", typeName(v))
			}
		}
		t.threats("rule.threat", rule["threat"])
	case hunt != nil:
		r.Format, r.ID, r.Name = FormatElasticHunting, get(hunt, "hunt", "uuid"), get(hunt, "hunt", "name")
		for _, id := range t.strings("hunt.mitre", hunt["mitre"]) {
			t.add(id, "")
		}
	case doc["threat"] != nil || (rule != nil && get(rule, "rule", "id") != ""):
		r.Format = FormatElasticEndpoint
		r.ID, r.Name = get(rule, "rule", "id"), get(rule, "rule", "name")
		t.threats("threat", doc["threat"])
	default:
		return Rule{}, nil, fmt.Errorf("%w: TOML without [rule] rule_id, [hunt] or [[threat]]", ErrNotRule)
	}
	if r.Name == "" {
		return Rule{}, nil, fmt.Errorf("%s rule has no name", r.Format)
	}
	return r, t.issues, nil
}

// parseJSON reads a Kibana export held in memory: NDJSON, or, when no line is a JSON object,
// a stream of pretty-printed objects.
func parseJSON(ctx context.Context, path string, data []byte) ([]Rule, []Issue, error) {
	out, issues, bad, nonEmpty, err := readExport(ctx, path, bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	if bad == nonEmpty && bad > 0 {
		if len(data) > MaxRuleFileBytes {
			return nil, nil, fmt.Errorf("no line is a JSON object, and JSON that is not one object a line is read only up to %d bytes: %s",
				MaxRuleFileBytes, issues[0].Reason)
		}
		// Not NDJSON: maybe one multi-line JSON object (or a stream of them).
		out, issues = nil, nil
		if err := checkJSONNesting(data); err != nil {
			return nil, nil, err
		}
		release := budget.acquire(int64(len(data)))
		defer release()
		dec := json.NewDecoder(bytes.NewReader(bomless(data)))
		dec.UseNumber()
		for {
			var v any
			err := dec.Decode(&v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("parse JSON: %w", err)
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("parse JSON: want an object, got %s", typeName(v))
			}
			if r, iss, ok := kibanaRule(path, 0, m); ok {
				out = append(out, r)
				issues = append(issues, iss...)
			}
		}
	}
	return exportResult(out, issues)
}

func exportResult(out []Rule, issues []Issue) ([]Rule, []Issue, error) {
	if len(out) == 0 {
		if len(issues) > 0 {
			return nil, nil, fmt.Errorf("no readable rule: %s", issues[0])
		}
		return nil, nil, fmt.Errorf("%w: JSON without rule_id objects", ErrNotRule)
	}
	return out, issues, nil
}

// readExport reads a Kibana export one line at a time: a rule object a line, an
// export-summary object last, possibly exception lists in between. A bad line is an issue
// and the others still count. It keeps one line in memory (at most MaxExportLineBytes) and
// checks ctx every 256 lines.
func readExport(ctx context.Context, path string, r io.Reader) (out []Rule, issues []Issue, bad, nonEmpty int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	tooLong := false
	for n := 1; ; {
		chunk, rerr := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxExportLineBytes {
			tooLong = true
		} else {
			line = append(line, chunk...)
		}
		if errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, nil, 0, 0, rerr
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, 0, 0, err
			}
		}
		if n == 1 {
			line = bomless(line)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 || tooLong {
			nonEmpty++
			r, iss, ok, err := exportLine(path, n, trimmed, tooLong)
			switch {
			case err != nil:
				bad++
				issues = append(issues, Issue{Path: path, Line: n, Reason: err.Error()})
			case ok:
				out = append(out, r)
				issues = append(issues, iss...)
			}
		}
		if rerr != nil {
			return out, issues, bad, nonEmpty, nil
		}
		line, tooLong = line[:0], false
		n++
	}
}

// exportLine reads one line of an export; ok is false for lines that are not rules.
func exportLine(path string, n int, line []byte, tooLong bool) (Rule, []Issue, bool, error) {
	if tooLong {
		return Rule{}, nil, false, fmt.Errorf("line longer than the %d-byte limit (skipped)", MaxExportLineBytes)
	}
	if err := checkJSONNesting(line); err != nil {
		return Rule{}, nil, false, errors.New(err.(*limitError).msg)
	}
	release := budget.acquire(int64(len(line)))
	defer release()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Rule{}, nil, false, fmt.Errorf("parse JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Rule{}, nil, false, fmt.Errorf("parse JSON: data after the object at column %d", dec.InputOffset()+1)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Rule{}, nil, false, fmt.Errorf("parse JSON: want an object, got %s", typeName(v))
	}
	r, iss, ok := kibanaRule(path, n, m)
	return r, iss, ok, nil
}

// kibanaRule reads one rule object of a Kibana export; ok is false for the export summary,
// exception lists and list items.
func kibanaRule(path string, line int, m map[string]any) (Rule, []Issue, bool) {
	id, _ := str(m["rule_id"])
	if _, summary := m["exported_count"]; summary || id == "" {
		return Rule{}, nil, false
	}
	r := Rule{Format: FormatKibanaExport, ID: id, Path: path, Line: line}
	t := techniques{rule: &r}
	r.Name = t.text("name", m["name"])
	if v, ok := m["enabled"]; ok {
		if b, ok := v.(bool); ok {
			r.Enabled = &b
		} else {
			t.warnf("enabled: want true or false, got %s (ignored)", typeName(v))
		}
	}
	t.threats("threat", m["threat"])
	return r, t.issues, true
}

// parseYAML reads Sigma and Sentinel rules. A file may hold several YAML documents
// (a Sigma rule and its correlation); each document with a title or name is a rule.
func parseYAML(path string, data []byte) ([]Rule, []Issue, error) {
	release := budget.acquire(int64(len(data)))
	defer release()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []Rule
	var issues []Issue
	for doc := 1; ; doc++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		where := "parse YAML"
		if len(out) > 0 || doc > 1 {
			where = fmt.Sprintf("parse YAML document %d", doc)
		}
		if err == nil {
			err = checkYAML(&node)
		}
		var m map[string]any
		if err == nil {
			err = node.Decode(&m)
		}
		if err != nil {
			var le *limitError
			if errors.As(err, &le) {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			return nil, nil, fmt.Errorf("%s: %s", where, yamlMessage(err))
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

// yamlMessage is a YAML decoder error without Go type names: "cannot unmarshal !!seq into
// map[string]interface {}" says the document is not a map.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
	return reCannotMap.ReplaceAllStringFunc(msg, func(m string) string {
		tag := reCannotMap.FindStringSubmatch(m)[1]
		kind, ok := map[string]string{"!!seq": "a list", "!!str": "text", "!!int": "a number", "!!float": "a number",
			"!!bool": "true/false", "!!binary": "binary data", "!!timestamp": "a date"}[tag]
		if !ok {
			kind = fmt.Sprintf("a value tagged %q", tag)
		}
		return "the document is " + kind + ", not a map"
	})
}

var reCannotMap = regexp.MustCompile("(?s)cannot unmarshal (!\\S*)\\s+(?:`.*?`\\s+)?into map\\[string\\]interface \\{\\}")

func yamlRule(path string, m map[string]any) (Rule, []Issue, bool) {
	r := Rule{Path: path}
	t := techniques{rule: &r}
	_, hasDetection := m["detection"]
	_, hasCorrelation := m["correlation"]
	_, hasLogsource := m["logsource"]
	props, _ := m["properties"].(map[string]any)
	kind, _ := str(m["kind"])
	switch {
	case m["title"] != nil && (hasDetection || hasCorrelation || hasLogsource):
		r.Format = FormatSigma
		r.Name = t.text("title", m["title"])
		r.ID, r.Status = t.text("id", m["id"]), t.text("status", m["status"])
		for _, v := range t.strings("tags", m["tags"]) {
			tag := strings.ToLower(strings.TrimSpace(v))
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
		r.Format = FormatSentinel
		r.Name = t.text("name", m["name"])
		r.ID = t.text("id", m["id"])
		for _, v := range t.strings("tactics", m["tactics"]) {
			t.tactic(v)
		}
		for _, v := range t.strings("relevantTechniques", m["relevantTechniques"]) {
			t.add(v, "")
		}
	case props != nil && kind == "CustomDetection":
		r.Format = FormatSentinel
		r.Name = t.text("properties.displayName", props["displayName"])
		r.ID = t.text("properties.id", props["id"])
		if s := t.text("properties.status", props["status"]); s != "" {
			enabled := strings.EqualFold(s, "enabled")
			r.Enabled = &enabled
		}
		da := t.asMap("properties.detectionAction", props["detectionAction"])
		at := t.asMap("properties.detectionAction.alertTemplate", da["alertTemplate"])
		field := "properties.detectionAction.alertTemplate.tactics"
		for i, tm := range t.maps(field, at["tactics"]) {
			tat := fmt.Sprintf("%s[%d]", field, i)
			tactic := t.tactic(t.text(tat+".tactic", tm["tactic"]))
			for j, te := range t.maps(tat+".techniques", tm["techniques"]) {
				tet := fmt.Sprintf("%s.techniques[%d]", tat, j)
				t.addUnder(tactic, t.text(tet+".technique", te["technique"]), "")
				for _, s := range t.strings(tet+".subTechniques", te["subTechniques"]) {
					t.addUnder(tactic, s, "")
				}
			}
		}
	default:
		return Rule{}, nil, false
	}
	return r, t.issues, true
}
