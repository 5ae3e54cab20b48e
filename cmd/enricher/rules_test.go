package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, args)
	return code, out.String(), errb.String()
}

func testdataCTID(t *testing.T, sub, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "rules", "testdata", "ctid", sub, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesShowBuiltin(t *testing.T) {
	code, out, errs := runCmd(t, "rules", "show", "t1021.002")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"T1021.002 SMB/Windows Admin Shares", "== azure 06/29/2021 (ATT&CK 8.2): 4 mappings",
		"microsoft_sentinel (azure_sentinel)", "alerts: 2019 Remote code execution attempt; 2030 Data exfiltration over SMB", "AC-2"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, "rules", "show", "--format", "json", "T1077")
	var res struct {
		Technique string
		Revoked   *struct {
			ReplacedBy []string `json:"replaced_by"`
		}
		Frameworks []struct{ Mappings []json.RawMessage }
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Revoked == nil || res.Revoked.ReplacedBy[0] != "T1021.002" || len(res.Frameworks) == 0 {
		t.Errorf("json show of revoked T1077: exit %d %s", code, out)
	}
}

func TestRulesUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"rules"}, {"rules", "frob"}, {"rules", "show"}, {"rules", "show", "X1"},
		{"rules", "show", "--format", "xml", "T1021"}, {"rules", "import", "x.json"}, {"rules", "import", "--out", t.TempDir()},
	} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestRulesImportCheckList(t *testing.T) {
	dir := t.TempDir()
	src := testdataCTID(t, "valid", "acme-2.0_attack-16.1-enterprise.json")
	code, out, errs := runCmd(t, "rules", "import", "--out", dir, src)
	if code != 0 {
		t.Fatalf("import exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "acme-2.0_attack-16.1-enterprise.yaml: acme 2.0 (ATT&CK 16.1): 4 mappings, skipped 2 (non_mappable 1, null mapping_type 1)") {
		t.Errorf("import said %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme-2.0_attack-16.1-enterprise.yaml")); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "rules", "check", "--rules", dir)
	if code != 0 || !strings.Contains(out, "skipped rows: 2 (non_mappable 1, null mapping_type 1)") ||
		!strings.Contains(out, "T1077 (Windows Admin Shares) is revoked") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("check exit %d: %s%s", code, out, errs)
	}
	code, out, _ = runCmd(t, "rules", "list", "--rules", dir)
	if code != 0 || !strings.Contains(out, "T1021.002") || !strings.Contains(out, "2 techniques, 3 mappings") {
		t.Errorf("list exit %d: %s", code, out)
	}
	code, out, _ = runCmd(t, "rules", "list", "--sources", "--format", "json", "--rules", dir)
	if code != 0 || !strings.Contains(out, `"framework": "acme"`) {
		t.Errorf("list --sources exit %d: %s", code, out)
	}
	// Invalid content: non-zero exit naming file, row and field.
	bad := testdataCTID(t, "content", "bad-technique.json")
	code, _, errs = runCmd(t, "rules", "check", bad)
	if code != 1 || !strings.Contains(errs, `bad-technique.json: row 2: attack_object_id "T12"`) {
		t.Errorf("check of bad file: exit %d: %s", code, errs)
	}
}
