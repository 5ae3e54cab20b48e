package coverage

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/enricher-dev/enricher/rules"
)

// sharedRoot is ../shared beside the repository; sharedRules is its detection-rules data,
// read in place (never copied into the repo).
var (
	sharedRoot  = filepath.Join("..", "..", "..", "shared")
	sharedRules = filepath.Join(sharedRoot, "data", "detection-rules")
)

// needShared skips the test when ../shared is absent, and fails it when ../shared is
// there but PATH (relative to it) is not.
func needShared(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(sharedRoot); err != nil {
		t.Skipf("shared data %s not present: %v", sharedRoot, err)
	}
	p := filepath.Join(sharedRoot, path)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared data is present but incomplete: %v", err)
	}
	return p
}

// needSharedRules is needShared for a folder of the shared detection rules.
func needSharedRules(t testing.TB, sub string) string {
	t.Helper()
	return needShared(t, filepath.Join("data", "detection-rules", sub))
}

func builtin(t testing.TB) *rules.Ruleset {
	t.Helper()
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func scan(t testing.TB, paths ...string) *ScanResult {
	t.Helper()
	s, err := Scan(context.Background(), paths, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t testing.TB, s *ScanResult) *Report {
	return Build(s, BuildOptions{Ruleset: builtin(t), RunID: "test-run", Now: time.Date(2026, 8, 21, 12, 0, 0, 0, time.UTC)})
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want syntax
	}{
		{"toml table", "[metadata]\ncreation_date = \"x\"", syntaxTOML},
		{"toml array of tables after comment", "# c\n\n[[rule.threat]]\n", syntaxTOML},
		{"toml key", "name = \"x\"\n", syntaxTOML},
		{"toml key with colon in value", "url = \"http://x\"\n", syntaxTOML},
		{"yaml", "title: x\nid: y\n", syntaxYAML},
		{"yaml with = in value", "title: a = b\n", syntaxYAML},
		{"yaml doc marker", "---\ntitle: x\n", syntaxYAML},
		{"yaml list", "- a\n- b\n", syntaxYAML},
		{"ndjson", "{\"rule_id\":\"x\"}\n{\"exported_count\":1}\n", syntaxJSON},
		{"json array", "[{\"a\": 1}]", syntaxJSON},
		{"json array multi-line", "[\n  {\"a\": 1}\n]", syntaxJSON},
		{"xml", "<group name=\"x\">", syntaxXML},
		{"bom", "\xef\xbb\xbftitle: x", syntaxYAML},
		{"prose", "Just some words\n", syntaxUnknown},
		{"empty", "", syntaxUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sniff([]byte(tt.in)); got != tt.want {
				t.Errorf("sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTestdata(t *testing.T) {
	s := scan(t, "testdata/rules")
	byName := map[string]Rule{}
	for _, r := range s.Rules {
		byName[r.Name] = r
	}
	tests := []struct {
		name       string
		format     Format
		id         string
		enabled    string // "", "true", "false"
		techniques []string
		tactics    []string
	}{
		{"Remote service via admin share", FormatKibanaExport, "b0e7f4a2-1111-4c1e-9f00-000000000001", "true", []string{"T1021", "T1021.002"}, []string{"lateral-movement"}},
		{"Old admin share rule", FormatKibanaExport, "b0e7f4a2-1111-4c1e-9f00-000000000002", "false", []string{"T1077"}, []string{"lateral-movement"}},
		{"Promotion rule without mapping", FormatKibanaExport, "b0e7f4a2-1111-4c1e-9f00-000000000004", "true", nil, nil},
		{"Legacy admin share access", FormatElastic, "0f0b9d3e-2222-4b1e-9c00-000000000077", "", []string{"T1077"}, []string{"lateral-movement"}},
		{"Admin share access with odd tags", FormatSigma, "5b9c4f4e-5555-4c1e-9f00-000000000000", "", []string{"T1021.002"}, []string{"lateral-movement"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := byName[tt.name]
			if !ok {
				t.Fatalf("rule not found; have %v", names(s.Rules))
			}
			if r.Format != tt.format || r.ID != tt.id {
				t.Errorf("format, id = %s, %s; want %s, %s", r.Format, r.ID, tt.format, tt.id)
			}
			en := ""
			if r.Enabled != nil {
				en = map[bool]string{true: "true", false: "false"}[*r.Enabled]
			}
			if en != tt.enabled {
				t.Errorf("enabled = %q, want %q", en, tt.enabled)
			}
			if !equal(r.Techniques, tt.techniques) {
				t.Errorf("techniques = %v, want %v", r.Techniques, tt.techniques)
			}
			if !equal(r.Tactics, tt.tactics) {
				t.Errorf("tactics = %v, want %v", r.Tactics, tt.tactics)
			}
		})
	}
	if len(s.Rules) != len(tests) {
		t.Errorf("rules = %v, want %d", names(s.Rules), len(tests))
	}

	// Unreadable files and lines are reported by path and reason; the rest still count.
	wantErrs := map[string]string{
		"broken_rule.toml": "parse TOML",
		"broken_sigma.yml": "parse YAML",
	}
	if len(s.Errors) != len(wantErrs) {
		t.Errorf("errors = %v, want %d", s.Errors, len(wantErrs))
	}
	for _, e := range s.Errors {
		want, ok := wantErrs[filepath.Base(e.Path)]
		if !ok || !strings.Contains(e.Reason, want) {
			t.Errorf("error %v: want reason containing %q", e, want)
		}
	}
	var warned []string
	for _, w := range s.Warnings {
		warned = append(warned, filepath.Base(w.Path)+":"+w.Reason)
	}
	wantWarn := []string{`kibana-export.ndjson:parse JSON`, `sigma_rule.yaml.txt:rule "Admin share access with odd tags": "t1021.2" is not an ATT&CK technique ID (skipped)`}
	if len(warned) != 2 || !strings.HasPrefix(warned[0], wantWarn[0]) || warned[1] != wantWarn[1] {
		t.Errorf("warnings = %q, want %q", warned, wantWarn)
	}
	if len(s.Warnings) > 0 && s.Warnings[0].Line != 4 {
		t.Errorf("bad export line = %d, want 4", s.Warnings[0].Line)
	}
	if len(s.Skipped) != 1 || filepath.Base(s.Skipped[0].Path) != "README.md" {
		t.Errorf("skipped = %v, want README.md", s.Skipped)
	}
}

func names(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRevokedAndRelations(t *testing.T) {
	rep := build(t, scan(t, "testdata/rules"))
	old := rep.Technique("T1077")
	if old == nil || old.Revoked == nil || !equal(old.Revoked.ReplacedBy, []string{"T1021.002"}) {
		t.Fatalf("T1077 = %+v, want revoked, replaced by T1021.002", old)
	}
	if !contains(old.Gaps, GapRevokedID) {
		t.Errorf("T1077 gaps = %v, want %s", old.Gaps, GapRevokedID)
	}
	sub := rep.Technique("T1021.002")
	var via []string
	for _, r := range sub.Rules {
		if r.Via != "" {
			via = append(via, r.Via+" "+r.ID)
		}
	}
	sort.Strings(via)
	want := []string{"T1077 0f0b9d3e-2222-4b1e-9c00-000000000077", "T1077 b0e7f4a2-1111-4c1e-9f00-000000000002"}
	if !equal(via, want) {
		t.Errorf("T1021.002 rules via revoked IDs = %v, want %v", via, want)
	}
	if sub.RuleCount() != 4 || len(sub.DirectRules()) != 2 || !equal(sub.RevokedIDs, []string{"T1077"}) {
		t.Errorf("T1021.002: %d rules, %d direct, revoked %v; want 4, 2, [T1077]", sub.RuleCount(), len(sub.DirectRules()), sub.RevokedIDs)
	}
	if sub.EnabledRules != 1 {
		t.Errorf("T1021.002 enabled rules = %d, want 1", sub.EnabledRules)
	}
	// Built-in content: NIST controls and Azure product detections for T1021.002.
	if len(sub.Controls) == 0 || len(sub.Detections) == 0 {
		t.Errorf("T1021.002 controls %d, detections %d; want both > 0", len(sub.Controls), len(sub.Detections))
	}
	if sub.Parent != "T1021" {
		t.Errorf("parent = %q", sub.Parent)
	}
	parent := rep.Technique("T1021")
	if !equal(parent.Subtechniques, []string{"T1021.002"}) || parent.SubtechniqueRules != 2 {
		t.Errorf("T1021 subtechniques %v (%d rules), want [T1021.002] (2)", parent.Subtechniques, parent.SubtechniqueRules)
	}
	if !contains(parent.Gaps, GapNoProductDetection) {
		t.Errorf("T1021 gaps = %v, want %s", parent.Gaps, GapNoProductDetection)
	}
	if rep.RulesWithoutTechnique != 1 {
		t.Errorf("rules without technique = %d, want 1", rep.RulesWithoutTechnique)
	}
}

// TestTacticsPerThreatBlock: a technique is listed under the tactic of the threat block
// that names it, not under every tactic of the rule (an impact rule that also names
// T1021.002 under lateral movement does not make T1021 an impact technique).
func TestTacticsPerThreatBlock(t *testing.T) {
	const toml = `[rule]
rule_id = "r1"
name = "Suspicious File Renamed via SMB"

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "T1486"
name = "Data Encrypted for Impact"
[rule.threat.tactic]
name = "Impact"

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "T1021"
name = "Remote Services"
[[rule.threat.technique.subtechnique]]
id = "T1021.002"
name = "SMB/Windows Admin Shares"
[rule.threat.tactic]
name = "Lateral Movement"
`
	const sigma = `title: Admin share and discovery
logsource: {product: windows}
detection: {sel: {a: b}, condition: sel}
tags: [attack.lateral-movement, attack.discovery, attack.t1021.002]
`
	toml1, _, err := Parse("r.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	sig, _, err := Parse("s.yml", []byte(sigma))
	if err != nil {
		t.Fatal(err)
	}
	rep := Build(&ScanResult{Rules: append(toml1, sig...)}, BuildOptions{})
	for id, want := range map[string][]string{
		"T1486":     {"impact"},
		"T1021":     {"lateral-movement"},
		"T1021.002": {"lateral-movement", "discovery"}, // Sigma does not pair tags: all its tactics
	} {
		if got := rep.Technique(id).Tactics; !equal(got, want) {
			t.Errorf("%s tactics = %v, want %v", id, got, want)
		}
	}
}

func TestGaps(t *testing.T) {
	one := int64(1)
	zero := int64(0)
	tests := []struct {
		name string
		t    Technique
		want []string
	}{
		{"controls no rules", Technique{Controls: []MappingRef{{}}}, []string{GapNoRules}},
		{"detections no rules", Technique{Detections: []MappingRef{{}}}, []string{GapNoRules}},
		{"rules no detection", Technique{Rules: []RuleRef{{}}, Controls: []MappingRef{{}}}, []string{GapNoProductDetection}},
		{"covered", Technique{Rules: []RuleRef{{}}, Detections: []MappingRef{{}}}, nil},
		{"revoked in rules", Technique{Rules: []RuleRef{{}}, Revoked: &Revoked{}}, []string{GapRevokedID}},
		{"rules without alerts", Technique{Rules: []RuleRef{{}}, Detections: []MappingRef{{}}, Alerts: &zero}, []string{GapNoAlerts}},
		{"alerts without rules", Technique{Alerts: &one}, []string{GapAlertsWithoutRules}},
		{"nothing", Technique{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gaps(&tt.t); !equal(got, tt.want) {
				t.Errorf("gaps = %v, want %v", got, tt.want)
			}
		})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

var (
	tomlRuleID    = regexp.MustCompile(`(?m)^rule_id = "([^"]+)"`)
	tomlTechnique = regexp.MustCompile(`(?m)^id = "(T[0-9]{4}(?:\.[0-9]{3})?)"`)
)

// TestSharedElasticT1021002 checks every shared Elastic rule that maps T1021.002 is listed
// for it with its rule_id, the expected set found by a plain regexp over the files.
func TestSharedElasticT1021002(t *testing.T) {
	dir := needSharedRules(t, "elastic")
	files, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
	want := map[string]bool{}
	wantPer := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		id := tomlRuleID.FindSubmatch(b)
		if id == nil {
			t.Fatalf("%s: no rule_id", f)
		}
		seen := map[string]bool{}
		for _, m := range tomlTechnique.FindAllSubmatch(b, -1) {
			seen[string(m[1])] = true
		}
		for tech := range seen {
			wantPer[tech]++
		}
		if seen["T1021.002"] {
			want[string(id[1])] = true
		}
	}
	if len(want) != 22 {
		t.Fatalf("grep found %d Elastic rules for T1021.002; SOURCES.md says 22", len(want))
	}
	rep := build(t, scan(t, dir))
	if rep.Rules != len(files) || len(rep.Errors) != 0 {
		t.Fatalf("rules %d (errors %v), want %d", rep.Rules, rep.Errors, len(files))
	}
	got := map[string]bool{}
	for _, r := range rep.Technique("T1021.002").Rules {
		if r.Source != FormatElastic || r.Name == "" {
			t.Errorf("rule %+v: want source elastic and a name", r)
		}
		got[r.ID] = true
	}
	for id := range want {
		if !got[id] {
			t.Errorf("rule_id %s maps T1021.002 but is not listed", id)
		}
	}
	for id := range got {
		if !want[id] {
			t.Errorf("rule_id %s listed for T1021.002 but does not map it", id)
		}
	}
	// And every other technique's count agrees with the grep.
	for tech, n := range wantPer {
		if tt := rep.Technique(tech); tt == nil || len(tt.DirectRules()) != n {
			t.Errorf("%s: got %v rules, grep says %d", tech, tt, n)
		}
	}
}

var sigmaTag = regexp.MustCompile(`(?m)^\s*-\s*attack\.(t[0-9]{4}(?:\.[0-9]{3})?)\s*$`)

// TestSharedSigmaCounts checks rule counts per technique against a regexp over the tags.
func TestSharedSigmaCounts(t *testing.T) {
	dir := needSharedRules(t, "sigma")
	want := sigmaGrepCounts(t, dir)
	rep := build(t, scan(t, dir))
	if rep.Rules != 38 || rep.RulesBySource[FormatSigma] != 38 || len(rep.Errors) != 0 {
		t.Fatalf("rules %d, errors %v; want 38 Sigma rules", rep.Rules, rep.Errors)
	}
	got := map[string]int{}
	for _, tt := range rep.Techniques {
		if n := len(tt.DirectRules()); n > 0 {
			got[tt.ID] = n
		}
	}
	if !mapsEqual(got, want) {
		t.Errorf("sigma counts\n got %v\nwant %v", got, want)
	}
	if got["T1021.002"] != 38 {
		t.Errorf("T1021.002 = %d, want 38", got["T1021.002"])
	}
}

func sigmaGrepCounts(t testing.TB, dir string) map[string]int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	want := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range sigmaTag.FindAllSubmatch(b, -1) {
			seen[strings.ToUpper(string(m[1]))] = true
		}
		for k := range seen {
			want[k]++
		}
	}
	return want
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSharedAllFormats reads the whole shared folder: every format, non-rule files skipped.
func TestSharedAllFormats(t *testing.T) {
	needSharedRules(t, "")
	rep := build(t, scan(t, sharedRules))
	want := map[Format]int{FormatElastic: 41, FormatElasticHunting: 3, FormatElasticEndpoint: 11, FormatSigma: 38, FormatSentinel: 3}
	for f, n := range want {
		if rep.RulesBySource[f] != n {
			t.Errorf("%s rules = %d, want %d", f, rep.RulesBySource[f], n)
		}
	}
	if len(rep.Errors) != 0 {
		t.Errorf("errors = %v", rep.Errors)
	}
	perSource := map[Format]int{}
	for _, r := range rep.Technique("T1021.002").Rules {
		perSource[r.Source]++
	}
	// Hunting: 3 files list T1021.002; Defend: 11; Sentinel: the analytic rule and its XDR form
	// (the third Sentinel file maps T1550).
	wantT := map[Format]int{FormatElastic: 22, FormatElasticHunting: 3, FormatElasticEndpoint: 11, FormatSigma: 38, FormatSentinel: 2}
	for f, n := range wantT {
		if perSource[f] != n {
			t.Errorf("T1021.002 %s rules = %d, want %d", f, perSource[f], n)
		}
	}
	if tt := rep.Technique("T1550"); tt == nil || !hasRule(tt, FormatSentinel, "782f3bad-31f7-468f-8f58-3b74fc931914") {
		t.Errorf("T1550 should list the Sentinel hunting query Anomalous Resource Access")
	}
	if tt := rep.Technique("T1021.002"); !hasRule(tt, FormatSentinel, "xdr-anomaly-in-smb-traffic-asim-network-session-schema-8717e498") {
		t.Errorf("T1021.002 should list the XDR custom detection")
	}
	var skipped []string
	for _, s := range rep.Skipped {
		skipped = append(skipped, filepath.Base(s.Path))
	}
	sort.Strings(skipped)
	wantSkipped := []string{"0810-sysmon_id_3.xml", "0840-win_event_channel.xml", "0955-WEF-baseline_rules.xml", "0990-amazon-security-lake_rules.xml",
		"SOURCES.md", "attack-crosswalk.json", "attack-technique-redirects.json", "endpoint-package_windows_malicious_behavior_alert.fields.yaml", "wazuh-template.json"}
	if !equal(skipped, wantSkipped) {
		t.Errorf("skipped = %v, want %v", skipped, wantSkipped)
	}
}

func hasRule(t *Technique, f Format, id string) bool {
	for _, r := range t.Rules {
		if r.Source == f && r.ID == id {
			return true
		}
	}
	return false
}

// TestRevocationsAgreeWithElastic checks the ruleset's revocation table against Elastic's
// own redirect map where both list an ID.
func TestRevocationsAgreeWithElastic(t *testing.T) {
	dir := needSharedRules(t, "elastic-etc")
	b, err := os.ReadFile(filepath.Join(dir, "attack-technique-redirects.json"))
	if err != nil {
		t.Fatal(err)
	}
	var red struct {
		Mapping map[string]string `json:"mapping"`
	}
	if err := json.Unmarshal(b, &red); err != nil {
		t.Fatal(err)
	}
	tables := builtin(t).Tables()
	checked := 0
	for _, rev := range tables.Revocations() {
		to, ok := red.Mapping[rev.ID]
		if !ok || len(rev.ReplacedBy) != 1 {
			continue
		}
		checked++
		if rev.ReplacedBy[0] != to {
			t.Errorf("%s: our table says %v, Elastic says %s", rev.ID, rev.ReplacedBy, to)
		}
	}
	if checked < 10 {
		t.Errorf("only %d revocations checked", checked)
	}
}

func TestOutputs(t *testing.T) {
	rep := build(t, scan(t, "testdata/rules"))
	for _, f := range Outputs {
		t.Run(f, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, rep, f); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			switch f {
			case OutputTable:
				if !strings.Contains(out, "T1021.002") || !strings.Contains(out, "revoked -> T1021.002") || !strings.Contains(out, "unreadable: testdata/rules/broken_rule.toml") {
					t.Errorf("table:\n%s", out)
				}
			case OutputMarkdown:
				if !strings.Contains(out, "| T1077 |") || !strings.Contains(out, "via revoked T1077") || !strings.Contains(out, "## Unreadable rule files") {
					t.Errorf("markdown:\n%s", out)
				}
			case OutputJSON:
				var back Report
				if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
					t.Fatal(err)
				}
				if len(back.Techniques) != len(rep.Techniques) || back.RunID != "test-run" {
					t.Errorf("json round trip: %d techniques, run %q", len(back.Techniques), back.RunID)
				}
			case OutputCSV:
				rows, err := csv.NewReader(&buf).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != len(rep.Techniques)+1 || !equal(rows[0], CSVHeader) {
					t.Fatalf("csv: %d rows, header %v", len(rows), rows[0])
				}
				for _, row := range rows[1:] {
					if row[0] == "T1021.002" && (row[4] != "4" || row[17] != "T1077") {
						t.Errorf("csv T1021.002 row = %v", row)
					}
				}
			case OutputNavigator:
				validateLayer(t, buf.Bytes())
			}
		})
	}
	if err := Write(&bytes.Buffer{}, rep, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

func compileLayerSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	s, err := c.Compile("testdata/navigator-layer-4.5.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validateLayer(t testing.TB, data []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := compileLayerSchema(t).Validate(inst); err != nil {
		t.Errorf("layer does not validate: %v", err)
	}
}

// TestNavigatorLayerShared builds the layer from every shared rule and validates it.
func TestNavigatorLayerShared(t *testing.T) {
	needSharedRules(t, "")
	rep := build(t, scan(t, sharedRules))
	var buf bytes.Buffer
	if err := WriteNavigator(&buf, rep); err != nil {
		t.Fatal(err)
	}
	validateLayer(t, buf.Bytes())
	var l Layer
	if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
		t.Fatal(err)
	}
	if l.Versions.Layer != "4.5" || l.Domain != "enterprise-attack" {
		t.Errorf("versions %+v domain %s", l.Versions, l.Domain)
	}
	for _, lt := range l.Techniques {
		if lt.TechniqueID != "T1021.002" {
			continue
		}
		if lt.Score != 76 {
			t.Errorf("T1021.002 score = %d, want 76 rules", lt.Score)
		}
		var controls, detections int
		for _, m := range lt.Metadata {
			switch m.Name {
			case "control":
				controls++
			case "detection":
				detections++
			}
		}
		tt := rep.Technique("T1021.002")
		if controls != len(tt.Controls) || detections != len(tt.Detections) || detections == 0 {
			t.Errorf("metadata: %d controls, %d detections; want %d, %d", controls, detections, len(tt.Controls), len(tt.Detections))
		}
		if len(lt.Links) < 2 || lt.Links[0].URL != "https://attack.mitre.org/techniques/T1021/002/" ||
			lt.Links[1].URL != "https://center-for-threat-informed-defense.github.io/mappings-explorer/attack/attack-8.2/domain-enterprise/techniques/T1021.002/" {
			t.Errorf("links = %+v", lt.Links)
		}
		if l.Gradient.MaxValue != 76 {
			t.Errorf("gradient max = %d", l.Gradient.MaxValue)
		}
		return
	}
	t.Error("T1021.002 missing from layer")
}

// TestLayerSchemaRejects makes sure the schema is not vacuous.
func TestLayerSchemaRejects(t *testing.T) {
	s := compileLayerSchema(t)
	tests := map[string]string{
		"no name":          `{"domain":"enterprise-attack"}`,
		"bad domain":       `{"name":"x","domain":"enterprise"}`,
		"old layer":        `{"name":"x","domain":"enterprise-attack","versions":{"navigator":"5.1.0","layer":"4.4"}}`,
		"old navigator":    `{"name":"x","domain":"enterprise-attack","versions":{"navigator":"4.8.1","layer":"4.5"}}`,
		"bad technique":    `{"name":"x","domain":"enterprise-attack","techniques":[{"techniqueID":"T21"}]}`,
		"string score":     `{"name":"x","domain":"enterprise-attack","techniques":[{"techniqueID":"T1021","score":"3"}]}`,
		"metadata no name": `{"name":"x","domain":"enterprise-attack","metadata":[{"value":"v"}]}`,
		"link no protocol": `{"name":"x","domain":"enterprise-attack","links":[{"label":"l","url":"example.com"}]}`,
		"one color":        `{"name":"x","domain":"enterprise-attack","gradient":{"colors":["#fff"],"minValue":0,"maxValue":1}}`,
		"unknown property": `{"name":"x","domain":"enterprise-attack","colour":"#fff"}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			if s.Validate(inst) == nil {
				t.Errorf("%s validated", doc)
			}
		})
	}
	ok := `{"name":"x","domain":"enterprise-attack","versions":{"navigator":"5.1.0","layer":"4.5"},"metadata":[{"name":"a","value":"b"},{"divider":true}]}`
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(ok))
	if err := s.Validate(inst); err != nil {
		t.Errorf("minimal layer rejected: %v", err)
	}
}

func TestScanCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, []string{"testdata/rules"}, ScanOptions{Workers: 1}); err == nil {
		t.Error("cancelled scan returned no error")
	}
	if _, err := Scan(context.Background(), []string{"testdata/does-not-exist"}, ScanOptions{}); err == nil {
		t.Error("missing path returned no error")
	}
}

// TestMappingLabels: product detections show their score category (a protect score is not
// a detection), and controls are listed per framework release (rev4 AC-2 is not rev5 AC-2).
func TestMappingLabels(t *testing.T) {
	d := MappingRef{Framework: "aws", FrameworkVersion: "12/12/2024", Capability: "AWS Network Firewall",
		MappingType: "technique_scores", ScoreCategory: "protect", ScoreValue: "partial"}
	if got, want := detectionLabel(d), "aws 12/12/2024: AWS Network Firewall (technique_scores protect/partial)"; got != want {
		t.Errorf("detectionLabel = %q, want %q", got, want)
	}
	d.ScoreCategory, d.ScoreValue = "", ""
	if got, want := detectionLabel(d), "aws 12/12/2024: AWS Network Firewall (technique_scores)"; got != want {
		t.Errorf("detectionLabel without score = %q, want %q", got, want)
	}
	cs := []MappingRef{
		{Framework: "nist_800_53", FrameworkVersion: "rev4", CapabilityID: "AC-2"},
		{Framework: "nist_800_53", FrameworkVersion: "rev4", CapabilityID: "AC-3"},
		{Framework: "nist_800_53", FrameworkVersion: "rev5", CapabilityID: "AC-2"},
	}
	if got, want := controlsByRelease(cs), "nist_800_53 rev4: AC-2, AC-3; nist_800_53 rev5: AC-2"; got != want {
		t.Errorf("controlsByRelease = %q, want %q", got, want)
	}
}
