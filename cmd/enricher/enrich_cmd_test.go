package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestEnrichCommand: one output line per input line, in order; alerts with techniques are
// enriched, others unchanged; a line that is not a JSON object passes through and is reported.
func TestEnrichCommand(t *testing.T) {
	in := strings.Join([]string{
		`{"kibana.alert.rule.threat":[{"technique":[{"id":"T1021","subtechnique":[{"id":"T1021.002"}]}]}],"kibana.alert.workflow_status":"acknowledged"}`,
		`not json`,
		`{"host":{"name":"WS-1"}}`,
		`{"rule":{"mitre":{"id":["T1077",42]}}}`,
		``,
		`{"tags":["attack.t9999"]}`,
	}, "\n") + "\n"
	var out, errb bytes.Buffer
	code := run(context.Background(), env{stdin: strings.NewReader(in), stdout: &out, stderr: &errb,
		getenv: func(string) string { return "" }}, []string{"enrich", "--batch", "2"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d output lines for 6 input lines:\n%s", len(lines), out.String())
	}
	doc := func(i int) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, lines[i])
		}
		return m
	}
	root := func(i int) map[string]any { r, _ := doc(i)["attack_mappings"].(map[string]any); return r }
	controls := func(r map[string]any) (n int) {
		for _, g := range r["controls"].([]any) {
			n += len(g.(map[string]any)["id"].([]any))
		}
		return n
	}
	if r := root(0); r["status"] != "enriched" || controls(r) != 16 || doc(0)["kibana.alert.workflow_status"] != "acknowledged" {
		t.Fatalf("line 1 not enriched as expected: %s", lines[0])
	}
	if lines[1] != "not json" || !strings.Contains(errb.String(), "stdin line 2: not a JSON object") {
		t.Fatalf("line 2 not passed through and reported: %q / %s", lines[1], errb.String())
	}
	if _, ok := doc(2)["attack_mappings"]; ok {
		t.Fatalf("line 3 has no technique field and must stay unchanged: %s", lines[2])
	}
	r := root(3)
	if r["status"] != "enriched" || r["techniques"].([]any)[0] != "T1021.002" || len(r["problems"].([]any)) != 1 {
		t.Fatalf("line 4 (revoked T1077 and a number): %s", lines[3])
	}
	if lines[4] != "" {
		t.Fatalf("empty line 5 not kept: %q", lines[4])
	}
	if root(5)["status"] != "unmapped" {
		t.Fatalf("line 6: %s", lines[5])
	}
}
