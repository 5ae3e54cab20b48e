package coverage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/rules/internal/memtest"
)

const tomlHead = "[rule]\nrule_id = \"r1\"\nname = \"n\"\n"

// nestedTOML is an Elastic rule with an inline table nested depth deep.
func nestedTOML(depth int) string {
	return tomlHead + "x = " + strings.Repeat("{a = ", depth) + "1" + strings.Repeat("}", depth) + "\n"
}

// TestHostileRuleFiles: input that once cost gigabytes, hung or vanished, with the exact
// error or warning each now gives.
func TestHostileRuleFiles(t *testing.T) {
	sigma := "title: t\nid: s1\nlogsource: {product: windows}\ndetection: {sel: {a: 1}, condition: sel}\n"
	export := `{"rule_id":"k1","name":"k","threat":[{"framework":"MITRE ATT&CK","tactic":{"name":"Execution"},"technique":[{"id":"T1059"}]}]`
	manyKeys := new(strings.Builder)
	manyKeys.WriteString(sigma + "x:\n")
	for i := 0; i <= MaxYAMLKeys; i++ {
		fmt.Fprintf(manyKeys, "  k%d: 1\n", i)
	}
	manyValues := new(strings.Builder)
	manyValues.WriteString(tomlHead + "x = [")
	for i := 0; i <= MaxTOMLValues; i++ {
		manyValues.WriteString("1,")
	}
	manyValues.WriteString("1]\n")
	for _, tc := range []struct {
		name, file, content string
		err, warning        string
		techniques          []string
	}{
		{name: "TOML nested 2724 deep (16 KB)", file: "n.toml", content: nestedTOML(2724),
			err: "line 4: TOML key path deeper than 10 levels (tables, dotted keys, inline tables and arrays together)"},
		{name: "TOML dotted key of 8000 parts", file: "d.toml", content: tomlHead + strings.Repeat("a.", 7999) + "a = 1\n",
			err: "line 4: TOML key path deeper than 10 levels (tables, dotted keys, inline tables and arrays together)"},
		{name: "TOML table header of 11 parts", file: "h.toml", content: tomlHead + "[" + strings.Repeat("a.", 10) + "a]\n",
			err: "line 4: TOML key path deeper than 10 levels (tables, dotted keys, inline tables and arrays together)"},
		{name: "TOML arrays nested in a table", file: "a.toml", content: tomlHead + "[x.y]\nz = [[[[[[[[[1]]]]]]]]]\n",
			err: "line 5: TOML key path deeper than 10 levels (tables, dotted keys, inline tables and arrays together)"},
		{name: "TOML nesting inside strings is text", file: "s.toml", content: tomlHead + "q = '''{{{{{{{{{{{{[[[[[[[[[[['''\nr = \"{{{{{{{{{{{{{{\"\n"},
		{name: "TOML with too many values", file: "v.toml", content: manyValues.String(),
			err: "line 4: more than 10000 TOML keys and array elements"},
		{name: "TOML too large", file: "big.toml", content: tomlHead + "q = '''" + strings.Repeat("x", MaxRuleFileBytes) + "'''\n",
			err: "larger than the 262144-byte limit of a TOML or YAML rule file"},
		{name: "TOML with a byte order mark", file: "bom.toml", content: "\xef\xbb\xbf" + tomlHead + "[[rule.threat]]\nframework = \"MITRE ATT&CK\"\n[[rule.threat.technique]]\nid = \"T1059\"\n",
			techniques: []string{"T1059"}},
		{name: "TOML threat of the wrong type", file: "w.toml", content: tomlHead + "threat = \"T1059\"\n",
			warning: `rule "n": rule.threat: want a list of maps, got a string (ignored)`},
		{name: "hunting mitre as a string", file: "hunt.toml", content: "[hunt]\nname = \"h\"\nuuid = \"u\"\nmitre = \"T1059\"\n",
			warning: `rule "h": hunt.mitre is a string, not a list: read as one item`, techniques: []string{"T1059"}},
		{name: "Sigma tags as one string", file: "tags.yml", content: sigma + "tags: attack.t1059.001\n",
			warning: `rule "t": tags is a string, not a list: read as one item`, techniques: []string{"T1059.001"}},
		{name: "Sigma tags as a map", file: "tagmap.yml", content: sigma + "tags: {attack: t1059}\n",
			warning: `rule "t": tags: want a list, got a map (ignored)`},
		{name: "Sigma tag that is a map", file: "tagitem.yml", content: sigma + "tags: [attack.t1021, {a: b}]\n",
			warning: `rule "t": tags[1]: want text, got a map (skipped)`, techniques: []string{"T1021"}},
		{name: "YAML map with too many keys", file: "keys.yml", content: manyKeys.String(),
			err: "parse YAML: line 6: a YAML map with more than 1000 keys"},
		{name: "YAML nested 100 deep", file: "deep.yml", content: sigma + "x: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n",
			err: "parse YAML: line 5: YAML nested deeper than 64 levels"},
		{name: "YAML list as the second document", file: "list.yml", content: sigma + "---\n- title: t\n",
			err: "parse YAML document 2: line 6: the document is a list, not a map"},
		{name: "export with a byte order mark", file: "bom.ndjson", content: "\xef\xbb\xbf" + export + "}\n", techniques: []string{"T1059"}},
		{name: "export with 1e400", file: "num.ndjson", content: export + `,"risk_score":1e400}` + "\n", techniques: []string{"T1059"}},
		{name: "export enabled 1e400", file: "en.ndjson", content: export + `,"enabled":1e400}` + "\n",
			warning: `rule "k": enabled: want true or false, got a number (ignored)`, techniques: []string{"T1059"}},
		{name: "export nested 10001 deep", file: "deep.ndjson", content: export + `,"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}\n",
			err: "line 1: JSON nested deeper than 64 levels"},
		{name: "export with one deep line among good ones", file: "mixed.ndjson", content: export + "}\n" + `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}\n",
			warning: "JSON nested deeper than 64 levels", techniques: []string{"T1059"}},
		{name: "export line not an object", file: "arr.ndjson", content: export + "}\n[1,2]\n",
			warning: "parse JSON: want an object, got a list", techniques: []string{"T1059"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := scan(t, dir)
			if tc.err != "" {
				if len(s.Errors) != 1 || s.Errors[0].Reason != tc.err {
					t.Fatalf("errors %v, want %q", s.Errors, tc.err)
				}
				return
			}
			if len(s.Errors) != 0 || len(s.Rules) != 1 {
				t.Fatalf("errors %v, %d rules", s.Errors, len(s.Rules))
			}
			if tc.warning == "" && len(s.Warnings) != 0 {
				t.Errorf("warnings %v", s.Warnings)
			}
			if tc.warning != "" && (len(s.Warnings) != 1 || !strings.HasSuffix(s.Warnings[0].Reason, tc.warning)) {
				t.Errorf("warnings %v, want %q", s.Warnings, tc.warning)
			}
			if !equal(s.Rules[0].Techniques, tc.techniques) {
				t.Errorf("techniques %v, want %v", s.Rules[0].Techniques, tc.techniques)
			}
		})
	}
}

// TestHostileTOMLMemory measures peak resident memory scanning the TOML files that cost
// 0.7 GB (16 KB) and over 15 GB (80 KB) in the decoder before the pre-scan, and files at
// every limit at once (each as large, deep and full of values as the limits let it be),
// four of them, more than the decode budget lets through at once.
func TestHostileTOMLMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"n16k", "n80k", "dot80k", "limits"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	write("n16k/x.toml", nestedTOML(2724))
	write("n80k/x.toml", nestedTOML(13646))
	write("dot80k/x.toml", tomlHead+strings.Repeat("a.", 40000)+"a = 1\n")
	for f := range 4 {
		var b strings.Builder
		b.WriteString(tomlHead)
		path := strings.Repeat("a.", MaxTOMLDepth-3) + "k"
		for i := 0; b.Len() < MaxRuleFileBytes-200; i++ {
			if (i+1)*(MaxTOMLDepth) >= MaxTOMLValues {
				break
			}
			fmt.Fprintf(&b, "[t%d]\n%s = {b = 1}\n", i, path)
		}
		write(fmt.Sprintf("limits/%d.toml", f), b.String())
	}
	for _, tc := range []struct {
		sub   string
		error bool
	}{{"n16k", true}, {"n80k", true}, {"dot80k", true}, {"limits", false}} {
		var took time.Duration
		rss := memtest.PeakRSS(t, tc.sub, func() error {
			start := time.Now()
			s, err := Scan(context.Background(), []string{filepath.Join(dir, tc.sub)}, ScanOptions{Workers: 4})
			took = time.Since(start)
			if err != nil {
				return err
			}
			if tc.error != (len(s.Errors) > 0) {
				return fmt.Errorf("errors %v", s.Errors)
			}
			if took > 5*time.Second {
				return fmt.Errorf("took %v", took)
			}
			return nil
		})
		t.Logf("%s: peak RSS %d MB", tc.sub, rss>>20)
		if rss > 100<<20 {
			t.Errorf("%s: peak RSS %d MB, want < 100 MB", tc.sub, rss>>20)
		}
	}
}

// TestScanLinksAndPipes: a link to a rules folder is walked; a named pipe is refused at
// once, whether named or met in a folder; a link to a folder inside one is listed as skipped.
func TestScanLinksAndPipes(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	os.MkdirAll(filepath.Join(rulesDir, "sub"), 0o755)
	if err := os.WriteFile(filepath.Join(rulesDir, "r.toml"), []byte(nestedTOML(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(rulesDir, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(rulesDir, "sub"), filepath.Join(rulesDir, "sublink")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(rulesDir, "pipe.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var s *ScanResult
	var err error
	go func() { s, err = Scan(context.Background(), []string{link}, ScanOptions{}); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Scan blocked on a named pipe")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != 1 || s.Rules[0].Path != filepath.Join(link, "r.toml") {
		t.Errorf("rules %+v", s.Rules)
	}
	var skipped []string
	for _, sk := range s.Skipped {
		skipped = append(skipped, sk.String())
	}
	want := []string{filepath.Join(link, "pipe.yml") + ": not a regular file (a named pipe)",
		filepath.Join(link, "sublink") + ": a link to a folder (not followed)"}
	if !equal(skipped, want) {
		t.Errorf("skipped\n got %q\nwant %q", skipped, want)
	}
	_, err = ListFiles([]string{fifo})
	if err == nil || err.Error() != fifo+": not a rule file or folder (a named pipe)" {
		t.Errorf("named pipe as a path: %v", err)
	}
}

// TestScanCancel: a cancelled scan stops within a second, even over many slow files.
func TestScanCancel(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(tomlHead)
	for i := 0; b.Len() < MaxRuleFileBytes-100; i++ {
		fmt.Fprintf(&b, "k%d = \"v\"\n", i)
	}
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d.toml", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	var once sync.Once
	_, err := Scan(ctx, []string{dir}, ScanOptions{Progress: func(done, total int) {
		once.Do(func() { cancelled = time.Now(); cancel() })
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(cancelled); took > time.Second {
		t.Errorf("stopped %v after the cancel", took)
	}
}
