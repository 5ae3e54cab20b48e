package coverage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

// writeRuleTree writes n rule files under dir: Elastic TOML, Sigma YAML and Defend TOML in
// turn, each about the size of a real rule (a 2 KB query or description), in 50 folders.
func writeRuleTree(tb testing.TB, dir string, n int) {
	tb.Helper()
	filler := ""
	for range 40 {
		filler += "process.name : \"example.exe\" and process.args : (\"-a\", \"-b\") and\n"
	}
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%50))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
		tech := fmt.Sprintf("T%04d", 1000+i%600)
		subt := fmt.Sprintf("%s.%03d", tech, 1+i%9)
		var name, body string
		switch i % 3 {
		case 0:
			name = fmt.Sprintf("rule_%05d.toml", i)
			body = fmt.Sprintf(`[metadata]
creation_date = "2024/01/01"
maturity = "production"

[rule]
author = ["Elastic"]
description = "Generated rule %d."
name = "Generated rule %d"
rule_id = "00000000-0000-4000-8000-%012d"
risk_score = 47
severity = "medium"
type = "eql"
query = '''
%s'''

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "%s"
name = "Technique"
reference = "https://attack.mitre.org/techniques/%s/"
[[rule.threat.technique.subtechnique]]
id = "%s"
name = "Sub-technique"
reference = "https://attack.mitre.org/techniques/%s/"

[rule.threat.tactic]
id = "TA0008"
name = "Lateral Movement"
reference = "https://attack.mitre.org/tactics/TA0008/"
`, i, i, i, filler, tech, tech, subt, subt)
		case 1:
			name = fmt.Sprintf("rule_%05d.yml", i)
			body = fmt.Sprintf(`title: Generated Sigma rule %d
id: 00000000-0000-4000-9000-%012d
status: test
description: |
%s
tags:
    - attack.lateral-movement
    - attack.%s
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\example.exe'
        CommandLine|contains:
            - ' -a '
            - ' -b '
    condition: selection
level: medium
`, i, i, indent(filler), subt)
		default:
			name = fmt.Sprintf("behavior_%05d.toml", i)
			body = fmt.Sprintf(`[rule]
description = "Generated endpoint rule %d."
id = "00000000-0000-4000-a000-%012d"
name = "Generated endpoint rule %d"
version = "1.0.0"
query = '''
%s'''

[[threat]]
framework = "MITRE ATT&CK"
[[threat.technique]]
id = "%s"
name = "Technique"
reference = "https://attack.mitre.org/techniques/%s/"

[threat.tactic]
id = "TA0002"
name = "Execution"
reference = "https://attack.mitre.org/tactics/TA0002/"
`, i, i, i, filler, tech, tech)
		}
		if err := os.WriteFile(filepath.Join(sub, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func indent(s string) string {
	out := ""
	for _, l := range splitLines(s) {
		out += "    " + l + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

const benchFiles = 5000

// BenchmarkScan parses 5000 generated rule files (a third each Elastic TOML, Sigma YAML,
// Defend TOML) and reports files/s, with one worker and with GOMAXPROCS workers.
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	writeRuleTree(b, dir, benchFiles)
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for b.Loop() {
				s, err := Scan(context.Background(), []string{dir}, ScanOptions{Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Rules) != benchFiles || len(s.Errors) != 0 {
					b.Fatalf("rules %d, errors %v", len(s.Rules), s.Errors)
				}
			}
			b.ReportMetric(float64(benchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}

// TestScanManyFiles keeps the generator honest and checks a large scan stays correct
// with a small pool.
func TestScanManyFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := t.TempDir()
	writeRuleTree(t, dir, 600)
	var last, badTotal atomic.Int64
	s, err := Scan(context.Background(), []string{dir}, ScanOptions{Workers: 3, Progress: func(done, total int) {
		if total != 600 {
			badTotal.Add(1)
		}
		for {
			cur := last.Load()
			if int64(done) <= cur || last.CompareAndSwap(cur, int64(done)) {
				break
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != 600 || len(s.Errors) != 0 || last.Load() != 600 || badTotal.Load() != 0 {
		t.Fatalf("rules %d, errors %v, progress %d (bad totals %d)", len(s.Rules), s.Errors, last.Load(), badTotal.Load())
	}
	rep := Build(s, BuildOptions{})
	if tt := rep.Technique("T1000"); tt == nil || tt.RuleCount() != 1 {
		t.Errorf("T1000: %+v", tt)
	}
}
