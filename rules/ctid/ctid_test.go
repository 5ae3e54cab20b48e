package ctid

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// moduleRoot walks up from the package directory to the folder holding go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// sharedMappings returns ../shared/data/mappings next to the repository. It skips the test
// when ../shared is absent, and fails it when ../shared is there without the schema.
func sharedMappings(t testing.TB) string {
	t.Helper()
	root := filepath.Join(moduleRoot(t), "..", "shared")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("shared data not found at %s (it lives beside the repository, not in it): %v", root, err)
	}
	dir := filepath.Join(root, "data", "mappings")
	if _, err := os.Stat(filepath.Join(dir, "mapex-unified-data-schema.json")); err != nil {
		t.Fatalf("shared data is present but incomplete: %v", err)
	}
	return dir
}

func testdata(t testing.TB, sub string) string {
	return filepath.Join(moduleRoot(t), "rules", "testdata", "ctid", sub)
}

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeInvalid(t *testing.T) {
	cases := []struct{ file, want string }{
		{"wrong-type-capability-id.json", `wrong-type-capability-id.json: row 2: capability_id: got number, want string or null`},
		{"wrong-type-references.json", `wrong-type-references.json: row 1: references: got string, want array or null`},
		{"wrong-type-reference-item.json", `wrong-type-reference-item.json: row 1: references[1]: got number, want string`},
		{"missing-mapping-type.json", `missing-mapping-type.json: row 3: mapping_type: required field missing`},
		{"missing-capability-group.json", `missing-capability-group.json: row 1: capability_group: required field missing`},
		{"unknown-row-field.json", `unknown-row-field.json: row 1: colour: unknown field`},
		{"bad-status.json", `bad-status.json: row 1: status "done": must be one of complete, in_progress, non_mappable`},
		{"null-status.json", `null-status.json: row 1: status: got null, want string`},
		{"bad-score-value.json", `bad-score-value.json: row 1: score_value "high": must be one of minimal, partial, significant or null`},
		{"bad-score-category.json", `bad-score-category.json: row 2: score_category "Detect": must be one of protect, detect, respond or null`},
		{"bad-date.json", `bad-date.json: metadata.creation_date "2025-01-02": must be a date MM/DD/YYYY`},
		{"bad-domain.json", `bad-domain.json: metadata.technology_domain "Enterprise": must be one of enterprise, mobile, ics`},
		{"missing-metadata-field.json", `missing-metadata-field.json: metadata.mapping_framework: required field missing`},
		{"unknown-metadata-field.json", `unknown-metadata-field.json: metadata.version: unknown field`},
		{"mapping-types-shape.json", `mapping-types-shape.json: metadata.mapping_types.mitigates.description: required field missing`},
		{"capability-groups-array.json", `capability-groups-array.json: metadata.capability_groups: got array, want object`},
		{"row-not-object.json", `row-not-object.json: row 2: got string, want object`},
		{"mapping-objects-object.json", `mapping-objects-object.json: mapping_objects: got object, want array`},
		{"unknown-top-field.json", `unknown-top-field.json: version: unknown field`},
		{"top-array.json", `top-array.json: got array, want object`},
		{"syntax.json", `syntax.json: invalid JSON at line 2, column 25: invalid character '.' after object key:value pair`},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			_, err := Decode(c.file, read(t, filepath.Join(testdata(t, "invalid"), c.file)), Options{})
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			if err.Error() != c.want {
				t.Errorf("error\n got: %s\nwant: %s", err, c.want)
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join(testdata(t, "invalid"), "*.json"))
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no case in TestDecodeInvalid", f)
		}
	}
}

func TestDecodeLenientScores(t *testing.T) {
	for _, f := range []string{"bad-score-value.json", "bad-score-category.json"} {
		doc, err := Decode(f, read(t, filepath.Join(testdata(t, "invalid"), f)), Options{Lenient: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(doc.Warnings) != 1 {
			t.Fatalf("%s: warnings %v", f, doc.Warnings)
		}
	}
}

func TestDecodeValid(t *testing.T) {
	doc, err := Decode("acme.json", read(t, filepath.Join(testdata(t, "valid"), "acme-2.0_attack-16.1-enterprise.json")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Metadata.MappingFramework != "acme" || doc.Metadata.AttackVersion != "16.1" || len(doc.Rows) != 6 {
		t.Fatalf("metadata %+v rows %d", doc.Metadata, len(doc.Rows))
	}
	r := doc.Rows[0]
	if r.AttackObjectID != "T1021.002" || r.ScoreValue != "partial" || len(r.References) != 1 ||
		!strings.Contains(r.Comments, `"Lateral SMB (external ID 7001)"`) {
		t.Errorf("row 1 = %+v", r)
	}
	if doc.Rows[2].MappingType != "non_mappable" || doc.Rows[3].MappingType != "" || doc.Rows[1].References != nil {
		t.Errorf("rows 2-4 = %+v", doc.Rows[1:4])
	}
	esc, err := Decode("escapes.json", read(t, filepath.Join(testdata(t, "valid"), "escapes.json")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := esc.Rows[0].Comments, "café \"quoted\" \\ tab\t line\nend ☃"; got != want {
		t.Errorf("comments %q, want %q", got, want)
	}
}

// TestValidateMatchesSchema checks that Validate accepts exactly what CTID's published JSON
// Schema accepts, on every shared mapping file and every test file.
func TestValidateMatchesSchema(t *testing.T) {
	shared := sharedMappings(t)
	c := jsonschema.NewCompiler()
	schema, err := c.Compile(filepath.Join(shared, "mapex-unified-data-schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, pat := range []string{
		filepath.Join(shared, "*_attack-*.json"),
		filepath.Join(testdata(t, "valid"), "*.json"),
		filepath.Join(testdata(t, "invalid"), "*.json"),
		filepath.Join(testdata(t, "content"), "*.json"),
	} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	if len(files) < 30 {
		t.Fatalf("only %d files", len(files))
	}
	for _, f := range files {
		data := read(t, f)
		ours := Validate(filepath.Base(f), data)
		var theirs error
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			theirs = err
		} else {
			theirs = schema.Validate(inst)
		}
		if (ours == nil) != (theirs == nil) {
			t.Errorf("%s: ours: %v; schema: %v", f, ours, theirs)
		}
		if strings.Contains(f, string(filepath.Separator)+"invalid"+string(filepath.Separator)) && ours == nil {
			t.Errorf("%s: invalid test file accepted", f)
		}
		if !strings.Contains(f, string(filepath.Separator)+"invalid"+string(filepath.Separator)) && ours != nil {
			t.Errorf("%s: rejected: %v", f, ours)
		}
	}
}
