package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var (
	goTypeNames = regexp.MustCompile(`interface \{\}|map\[|\[\]|rules\.[A-Z]|into \w`)
	quoted      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`) // values from the input, which may hold anything
)

// FuzzDecodeSource fuzzes the rules YAML format and the CTID conversion behind it: no panic,
// at most a second, errors in YAML's words, and what decodes validates.
func FuzzDecodeSource(f *testing.F) {
	root := moduleRoot(f)
	for _, pat := range []string{"rules/builtin/*.yaml", "rules/tables/*.yaml", "rules/testdata/ctid/*/*.json"} {
		files, _ := filepath.Glob(filepath.Join(root, pat))
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("source: {framework: x, rows: many, skipped: {a: b}}\nmappings: [{technique: [1]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		file, err := DecodeSource("f", data)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v for %d bytes", d, len(data))
		}
		if err != nil {
			if ce, ok := err.(*ContentError); ok && goTypeNames.MatchString(quoted.ReplaceAllString(ce.Err.Error(), `""`)) {
				t.Fatalf("Go type names in %q", err)
			}
			return
		}
		if file.Source.Framework == "" && len(file.Mappings) == 0 {
			return // an empty CTID file: loads as nothing, and Import refuses it
		}
		if err := file.Validate("f"); err != nil {
			t.Fatalf("decoded file does not validate: %v", err)
		}
	})
}
