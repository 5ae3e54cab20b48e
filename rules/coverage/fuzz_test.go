package coverage

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/enricher-dev/enricher/rules"
)

var (
	// goTypeNames matches Go type names that must not reach a user in a warning.
	goTypeNames = regexp.MustCompile(`interface \{\}|map\[|\[\]|Go (struct|value)|json: cannot`)
	// quoted matches values quoted from the input, which may hold anything.
	quoted = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|`[^`]*`")
)

func leaksGoTypes(msg string) bool {
	return goTypeNames.MatchString(quoted.ReplaceAllString(msg, `""`))
}

// addSeeds adds the test rule files and the shared ones whose name matches one of exts.
func addSeeds(f *testing.F, exts ...string) {
	var files []string
	filepath.WalkDir("testdata/rules", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	filepath.WalkDir(sharedRules, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	for _, p := range files {
		for _, ext := range exts {
			if strings.HasSuffix(p, ext) {
				if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
					f.Add(data)
				}
				break
			}
		}
	}
}

// checkParse runs one parser and checks what every parser promises: no panic, at most a
// second, rules with valid technique IDs, warnings and errors without Go type names.
func checkParse(t *testing.T, data []byte, parse func([]byte) ([]Rule, []Issue, error)) {
	start := time.Now()
	rs, issues, err := parse(data)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v for %d bytes", d, len(data))
	}
	if err != nil && leaksGoTypes(err.Error()) {
		t.Fatalf("Go type names in error %q", err)
	}
	for _, is := range issues {
		if leaksGoTypes(is.Reason) {
			t.Fatalf("Go type names in warning %q", is.Reason)
		}
	}
	for _, r := range rs {
		for _, id := range r.Techniques {
			if !rules.IsTechniqueID(id) {
				t.Fatalf("rule %q names %q", r.Name, id)
			}
		}
	}
}

// FuzzParseTOML fuzzes Elastic detection-rules, hunting and Defend TOML. Beyond checkParse,
// it checks the pre-scan against the decoder: input the pre-scan lets through must decode
// within 16 MB of allocation (the decoder's cost grows with the square of key depth; fuzz
// inputs are a few KB).
func FuzzParseTOML(f *testing.F) {
	addSeeds(f, ".toml")
	f.Add([]byte(nestedTOML(20)))
	f.Add([]byte(tomlHead + "a.b.c.d.e.f.g.h.i = 1\n[[x.y.z]]\nq = [[{a = [1]}]]\n"))
	f.Add([]byte(tomlHead + "s = \"\"\"a\\\"\"\"b\"\"\"\nt = '''x'''''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, func(d []byte) ([]Rule, []Issue, error) {
			r, is, err := parseTOML("f.toml", d)
			if err != nil {
				return nil, is, err
			}
			return []Rule{r}, is, nil
		})
		if checkTOML(data) != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var v map[string]any
		toml.Decode(string(data), &v)
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 && len(data) < 64<<10 {
			t.Fatalf("pre-scan passed %d bytes that took %d MB to decode", len(data), grew>>20)
		}
	})
}

// FuzzParseYAML fuzzes Sigma and Sentinel YAML.
func FuzzParseYAML(f *testing.F) {
	addSeeds(f, ".yml", ".yaml", ".yaml.txt")
	f.Add([]byte("title: t\nlogsource: {}\ndetection: {}\ntags: attack.t1059\n"))
	f.Add([]byte("name: n\nquery: q\ntactics: [a]\nrelevantTechniques: T1059\n---\nkind: CustomDetection\nproperties: {id: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, func(d []byte) ([]Rule, []Issue, error) { return parseYAML("f.yml", d) })
	})
}

// FuzzParseExport fuzzes Kibana rule exports (NDJSON, or pretty-printed JSON).
func FuzzParseExport(f *testing.F) {
	addSeeds(f, ".ndjson", ".json")
	f.Add([]byte("\xef\xbb\xbf{\"rule_id\":\"a\",\"name\":\"n\",\"enabled\":1e400,\"threat\":\"x\"}\n{\"exported_count\":1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, func(d []byte) ([]Rule, []Issue, error) { return parseJSON(context.Background(), "f.ndjson", d) })
	})
}

// FuzzParse fuzzes the whole entry point: sniffing, then whichever parser the content picks.
func FuzzParse(f *testing.F) {
	addSeeds(f, "")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, func(d []byte) ([]Rule, []Issue, error) { return Parse("f", d) })
	})
}
