package dashboards

// Helpers the dashboard tests use to check the shipped objects against real servers:
// a translator for the small KQL subset the Kibana objects use, and a splitter that
// turns an alert rule expression into the inner vectors that must return series.

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// KQL is a parsed KQL query in the subset the Kibana objects use:
//
//	query  = or
//	or     = and { "or" and }
//	and    = unary { "and" unary }
//	unary  = "not" unary | "(" query ")" | clause
//	clause = FIELD ":" ( "*" | QUOTED | WORD )
//
// Anything else (ranges, wildcards in values, nested field syntax) is a parse error, so a
// query the tests cannot translate faithfully fails loudly instead of being approximated.
type KQL struct {
	Op       string // "and", "or", "not", "clause", or "" for the empty query
	Children []*KQL
	Field    string
	Value    string // "*" for exists
	Quoted   bool
}

// ParseKQL parses q; the empty query matches everything.
func ParseKQL(q string) (*KQL, error) {
	toks, err := lexKQL(q)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return &KQL{}, nil
	}
	p := &kqlParser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("kql %q: unexpected %q", q, p.toks[p.i].s)
	}
	return n, nil
}

type kqlTok struct {
	s      string
	quoted bool
}

func lexKQL(q string) ([]kqlTok, error) {
	var out []kqlTok
	r := []rune(q)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '(' || c == ')' || c == ':':
			out = append(out, kqlTok{s: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			i++
			for ; i < len(r) && r[i] != '"'; i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
				}
				b.WriteRune(r[i])
			}
			if i >= len(r) {
				return nil, fmt.Errorf("kql %q: unterminated string", q)
			}
			i++
			out = append(out, kqlTok{s: b.String(), quoted: true})
		default:
			j := i
			for j < len(r) && !unicode.IsSpace(r[j]) && !strings.ContainsRune(`():"`, r[j]) {
				if strings.ContainsRune(`<>{}\`, r[j]) {
					return nil, fmt.Errorf("kql %q: %q is outside the supported subset", q, r[j])
				}
				j++
			}
			out = append(out, kqlTok{s: string(r[i:j])})
			i = j
		}
	}
	return out, nil
}

type kqlParser struct {
	toks []kqlTok
	i    int
}

func (p *kqlParser) peekWord(w string) bool {
	return p.i < len(p.toks) && !p.toks[p.i].quoted && strings.EqualFold(p.toks[p.i].s, w)
}

func (p *kqlParser) or() (*KQL, error) {
	return p.binary("or", p.and)
}

func (p *kqlParser) and() (*KQL, error) {
	return p.binary("and", p.unary)
}

func (p *kqlParser) binary(op string, next func() (*KQL, error)) (*KQL, error) {
	first, err := next()
	if err != nil {
		return nil, err
	}
	kids := []*KQL{first}
	for p.peekWord(op) {
		p.i++
		n, err := next()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &KQL{Op: op, Children: kids}, nil
}

func (p *kqlParser) unary() (*KQL, error) {
	if p.i >= len(p.toks) {
		return nil, fmt.Errorf("kql: unexpected end of query")
	}
	switch {
	case p.peekWord("not"):
		p.i++
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &KQL{Op: "not", Children: []*KQL{n}}, nil
	case !p.toks[p.i].quoted && p.toks[p.i].s == "(":
		p.i++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.toks) || p.toks[p.i].s != ")" {
			return nil, fmt.Errorf("kql: missing )")
		}
		p.i++
		return n, nil
	}
	if p.i+2 >= len(p.toks) {
		return nil, fmt.Errorf("kql: incomplete clause at %q", p.toks[p.i].s)
	}
	f, colon, v := p.toks[p.i], p.toks[p.i+1], p.toks[p.i+2]
	if f.quoted || colon.quoted || colon.s != ":" || (!v.quoted && strings.ContainsAny(v.s, "():")) {
		return nil, fmt.Errorf("kql: want field : value at %q", f.s)
	}
	if !v.quoted && v.s != "*" && strings.Contains(v.s, "*") {
		return nil, fmt.Errorf("kql: wildcard value %q is outside the supported subset", v.s)
	}
	p.i += 3
	return &KQL{Op: "clause", Field: f.s, Value: v.s, Quoted: v.quoted}, nil
}

// ES returns the Elasticsearch query the KQL query stands for, as Kibana builds it:
// quoted values are match_phrase, bare values match, `*` exists.
func (n *KQL) ES() map[string]any {
	switch n.Op {
	case "":
		return map[string]any{"match_all": map[string]any{}}
	case "clause":
		switch {
		case n.Value == "*" && !n.Quoted:
			return map[string]any{"exists": map[string]any{"field": n.Field}}
		case n.Quoted:
			return map[string]any{"match_phrase": map[string]any{n.Field: n.Value}}
		default:
			return map[string]any{"match": map[string]any{n.Field: n.Value}}
		}
	case "not":
		return map[string]any{"bool": map[string]any{"must_not": []any{n.Children[0].ES()}}}
	case "and":
		var fs []any
		for _, c := range n.Children {
			fs = append(fs, c.ES())
		}
		return map[string]any{"bool": map[string]any{"filter": fs}}
	case "or":
		var fs []any
		for _, c := range n.Children {
			fs = append(fs, c.ES())
		}
		return map[string]any{"bool": map[string]any{"should": fs, "minimum_should_match": 1}}
	}
	panic("kql: unknown op " + n.Op)
}

// Fields returns the fields the query names.
func (n *KQL) Fields() []string {
	if n.Op == "clause" {
		return []string{n.Field}
	}
	var out []string
	for _, c := range n.Children {
		out = append(out, c.Fields()...)
	}
	return out
}

// InnerExprs returns the parts of an alert rule expression that must each return at
// least one series on a healthy daemon: the expression is split at top-level and/or/
// unless, and each operand loses a trailing top-level comparison with a number
// (`x > 0.05` becomes `x`). The threshold decides whether the alert fires; the inner
// vector proves the metrics, labels and functions it is built on exist.
func InnerExprs(expr string) []string {
	var out []string
	for _, part := range splitTopLevel(expr, []string{"and", "or", "unless"}) {
		out = append(out, stripComparison(stripMatching(part)))
	}
	return out
}

var reMatching = regexp.MustCompile(`^\s*(?:on|ignoring)\s*\([^)]*\)\s*(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?`)

// stripMatching removes a leading vector-matching clause (on(...), ignoring(...), with an
// optional group_left/group_right) that splitting a binary expression leaves on its right operand.
func stripMatching(s string) string {
	return reMatching.ReplaceAllString(s, "")
}

// walkTopLevel calls f for each byte index at parenthesis/brace/bracket depth 0 outside
// string literals.
func walkTopLevel(s string, f func(i int) bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote = c
		case '(', '{', '[':
			depth++
		case ')', '}', ']':
			depth--
		default:
			if depth == 0 && !f(i) {
				return
			}
		}
	}
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func splitTopLevel(s string, words []string) []string {
	var parts []string
	start := 0
	walkTopLevel(s, func(i int) bool {
		for _, w := range words {
			end := i + len(w)
			if end <= len(s) && s[i:end] == w && (i == 0 || !isIdent(s[i-1])) && (end == len(s) || !isIdent(s[end])) {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = end
			}
		}
		return true
	})
	return append(parts, strings.TrimSpace(s[start:]))
}

var reTrailingNumber = regexp.MustCompile(`^\s*(bool\s+)?[-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|Inf|NaN)\s*$`)

func stripComparison(s string) string {
	cut := -1
	walkTopLevel(s, func(i int) bool {
		c := s[i]
		if c != '>' && c != '<' && c != '=' && c != '!' {
			return true
		}
		n := 1
		if i+1 < len(s) && s[i+1] == '=' {
			n = 2
		}
		if (c == '=' || c == '!') && n == 1 { // =~, !~ or a lone =: not a comparison
			return true
		}
		if reTrailingNumber.MatchString(s[i+n:]) {
			cut = i
			return false
		}
		return true
	})
	if cut < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(s[:cut])
}

var reMetricName = regexp.MustCompile(`\b(enricher_[a-z0-9_]+|up)\b`)

// MetricNames returns the enricher_* metric names and `up` that a PromQL expression uses.
func MetricNames(expr string) []string {
	// label values sit in quotes: drop them so `{result="up"}` is not read as a metric.
	var b strings.Builder
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		default:
			b.WriteByte(c)
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range reMetricName.FindAllString(b.String(), -1) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// GrafanaVars are the values the tests give the dashboard's template variables.
func GrafanaVars(job string) map[string]string {
	return map[string]string{
		"$__rate_interval": "1m",
		"$__interval":      "15s",
		"$__range":         "5m",
		"$job":             job,
		"$instance":        ".*",
	}
}

var reVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// SubstituteVars replaces Grafana variables in expr; it fails on a variable it does not know.
func SubstituteVars(expr string, vars map[string]string) (string, error) {
	var bad []string
	out := reVar.ReplaceAllStringFunc(expr, func(v string) string {
		k := "$" + strings.Trim(v, "${}")
		if r, ok := vars[k]; ok {
			return r
		}
		bad = append(bad, v)
		return v
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unknown Grafana variable(s) %v in %q", bad, expr)
	}
	return out, nil
}
