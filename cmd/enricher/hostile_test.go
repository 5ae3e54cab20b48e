package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoverageHostilePaths: a link to a rules folder counts its rules; a named pipe given as
// a path is a usage error at once (it used to hang); a Sigma tags string is read with a
// warning.
func TestCoverageHostilePaths(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sigma := "title: One string tag\nid: s1\nlogsource: {product: windows}\ndetection: {sel: {a: 1}, condition: sel}\ntags: attack.t1021.002\n"
	if err := os.WriteFile(filepath.Join(rulesDir, "r.yml"), []byte(sigma), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(rulesDir, link); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCoverageCmd(t, nil, "--format", "json", "--only-rule-techniques", link)
	if code != 0 || !strings.Contains(out, `"rules": 1,`) || !strings.Contains(out, `tags is a string, not a list: read as one item`) ||
		!strings.Contains(out, `"T1021.002"`) {
		t.Errorf("exit %d: %s\n%s", code, out, errs)
	}
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		code, _, errs = runCoverageCmd(t, nil, fifo)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("coverage blocked on a named pipe")
	}
	if want := "enricher coverage: " + fifo + ": not a rule file or folder (a named pipe)\n"; code != 2 || errs != want {
		t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, want)
	}
}

// TestRulesAndCoverageStopOnCancel: coverage, rules import and rules check stop within a second of cancellation
// (what SIGTERM does through main's signal.NotifyContext), over many slow inputs.
func TestRulesAndCoverageStopOnCancel(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("[rule]\nrule_id = \"r\"\nname = \"n\"\n")
	for i := 0; b.Len() < 250<<10; i++ {
		fmt.Fprintf(&b, "k%d = \"%s\"\n", i, strings.Repeat("v", 120)) // long values: well under the key limit
	}
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d.toml", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctid := filepath.Join(dir, "big.json")
	var j strings.Builder
	j.WriteString(`{"mapping_objects": [`)
	for i := range 150000 {
		if i > 0 {
			j.WriteString(",")
		}
		j.WriteString(`{"attack_object_id": "T1021", "capability_id": "AC-2", "mapping_type": "mitigates", "capability_group": "AC", "mapping_framework": "x", "comments": "` + strings.Repeat("c", 200) + `"}`)
	}
	j.WriteString("]}")
	if err := os.WriteFile(ctid, []byte(j.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"coverage", []string{"coverage", dir}},
		{"rules import", []string{"rules", "import", "--out", filepath.Join(dir, "out"), ctid, ctid, ctid}},
		{"rules check", []string{"rules", "check", ctid, ctid, ctid, ctid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Early enough that every command is still at work (reading the 45 MB CTID
			// file alone takes longer on any machine), so the cancel is what stops it.
			const after = 50 * time.Millisecond
			time.AfterFunc(after, cancel)
			var out, errb bytes.Buffer
			start := time.Now()
			code := run(ctx, env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, tc.args)
			took := time.Since(start)
			if code != 1 || !strings.Contains(errb.String(), "context canceled") {
				t.Errorf("exit %d after %v: %s", code, took, errb.String())
			}
			if took > after+time.Second {
				t.Errorf("stopped %v after the cancel", took-after)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Error("a cancelled import wrote files")
			}
		})
	}
}
