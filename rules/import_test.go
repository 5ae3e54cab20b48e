package rules

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/rules/internal/memtest"
)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestImportSameRelease imports the shared Azure 06/29/2021 release (978 mappings) with the
// built-in excerpt of the same release (4 mappings): refused, nothing written. The same file
// twice is written once.
func TestImportSameRelease(t *testing.T) {
	azure := sharedFile(t, "azure-06.29.2021_attack-8.2-enterprise.json")
	excerpt := filepath.Join(moduleRoot(t), "rules", "builtin", "azure-06.29.2021_t1021.002.yaml")
	parent := t.TempDir()
	out := filepath.Join(parent, "rules")
	_, err := Import(context.Background(), ImportConfig{Out: out, Sources: []string{azure, excerpt}})
	want := "same framework release in two sources: " + azure + " (978 mappings) and " + excerpt +
		" (4 mappings) are both azure 06/29/2021 (ATT&CK 8.2) enterprise, with different content; " +
		"a rules folder holds one file per release: import one of them, or merge them by hand"
	if err == nil || err.Error() != want || !errors.Is(err, ErrSameRelease) {
		t.Fatalf("error\n got: %v\nwant: %s", err, want)
	}
	if got := listDir(t, parent); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}

	res, err := Import(context.Background(), ImportConfig{Out: out, Sources: []string{azure, azure}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Mappings != 978 || res[1].SameAs != azure || res[1].Path != res[0].Path {
		t.Fatalf("results %+v", res)
	}
	if got := listDir(t, out); len(got) != 1 {
		t.Fatalf("wrote %v", got)
	}
	rs, err := Load(context.Background(), LoadConfig{Dir: out})
	if err != nil || rs.Len() == 0 {
		t.Fatalf("load: %v", err)
	}
}

// TestImportAtomic: a source that fails after others were read leaves the folder as it was;
// a successful import replaces a release's file and keeps the folder's other files.
func TestImportAtomic(t *testing.T) {
	good := sharedFile(t, "aws-12.12.2024_attack-16.1-enterprise.json")
	gcp := sharedFile(t, "gcp-03.06.2025_attack-16.1-enterprise.json")
	bad := filepath.Join(ctidTestdata(t, "content"), "bad-technique.json")
	parent := t.TempDir()
	out := filepath.Join(parent, "rules")

	// New folder: nothing at all on failure.
	if _, err := Import(context.Background(), ImportConfig{Out: out, Sources: []string{good, gcp, bad}}); err == nil {
		t.Fatal("bad source imported")
	}
	if got := listDir(t, parent); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}

	// Existing folder with a table and an older copy of the AWS release.
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	awsName := "aws-12.12.2024_attack-16.1-enterprise.yaml"
	for name, body := range map[string]string{AliasesFile: "aliases: []\n", awsName: "old\n"} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Import(context.Background(), ImportConfig{Out: out, Sources: []string{good, gcp, bad}}); err == nil {
		t.Fatal("bad source imported")
	}
	if got := strings.Join(listDir(t, out), " "); got != AliasesFile+" "+awsName {
		t.Fatalf("folder now holds %s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, awsName)); string(b) != "old\n" {
		t.Fatalf("old file changed: %.40q", b)
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("left beside the folder: %v", got)
	}

	if _, err := Import(context.Background(), ImportConfig{Out: out, Sources: []string{good, gcp}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listDir(t, out), " "); got != AliasesFile+" "+awsName+" gcp-03.06.2025_attack-16.1-enterprise.yaml" {
		t.Fatalf("folder now holds %s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, awsName)); !strings.HasPrefix(string(b), "# aws 12/12/2024 mappings") {
		t.Fatalf("release not replaced: %.40q", b)
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("left beside the folder: %v", got)
	}
}

// TestImportWritesWhatYAMLWould checks that the row-at-a-time writer gives the bytes yaml.v3
// gives for the whole file, on every shared release and the test files.
func TestImportWritesWhatYAMLWould(t *testing.T) {
	files := append(sharedMappingFiles(t), filepath.Join(ctidTestdata(t, "valid"), "acme-2.0_attack-16.1-enterprise.json"),
		filepath.Join(ctidTestdata(t, "valid"), "escapes.json"))
	for _, src := range files {
		f, err := LoadSource(context.Background(), nil, 0, src)
		if err != nil {
			t.Fatal(err)
		}
		f.Source.Path = ""
		var want strings.Builder
		fmt.Fprintf(&want, "# %s %s mappings to ATT&CK %s (%s), imported by `enricher rules import`.\n",
			f.Source.Framework, f.Source.FrameworkVersion, f.Source.AttackVersion, f.Source.Domain)
		fmt.Fprintf(&want, "# Values are as published; enricher normalizes them when it loads this file.\n")
		enc := yaml.NewEncoder(&want)
		enc.SetIndent(2)
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
		enc.Close()
		res, err := Import(context.Background(), ImportConfig{Out: filepath.Join(t.TempDir(), "out"), Sources: []string{src}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(res[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want.String() {
			t.Errorf("%s: streamed YAML differs from yaml.v3's", filepath.Base(src))
		}
	}
}

// writeBigCTID writes a CTID file of about size bytes: the NIST rev5 rows repeated.
func writeBigCTID(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	w.WriteString(`{"metadata": {"mapping_version": "1", "attack_version": "16.1", "technology_domain": "enterprise",
 "creation_date": "01/13/2022", "last_update": "04/16/2025", "mapping_framework": "nist_800_53",
 "mapping_framework_version": "rev5", "mapping_types": {}, "capability_groups": {}}, "mapping_objects": [`)
	row := `{"attack_object_id": "T1021.002", "attack_object_name": "SMB/Windows Admin Shares", "capability_id": "AC-%02d",
 "capability_description": "Account Management", "capability_group": "AC", "mapping_type": "mitigates", "status": "complete",
 "comments": "` + strings.Repeat("Control text. ", 20) + `", "references": []}`
	n := 0
	for i := 0; n < size; i++ {
		if i > 0 {
			w.WriteString(",\n")
		}
		k, _ := fmt.Fprintf(w, row, i%100)
		n += k
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestImportLargeSourceBounded imports a 38 MB CTID file: it is refused (its YAML would be
// over MaxYAMLBytes) within 100 MB of resident memory, and nothing is written. Before
// row-at-a-time decoding and writing, this import peaked at 2.3 GB.
func TestImportLargeSourceBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 38 MB file")
	}
	parent := t.TempDir()
	src := filepath.Join(parent, "nist_800_53-rev5_attack-16.1-enterprise.json")
	out := filepath.Join(parent, "out")
	writeBigCTID(t, src, 38<<20)
	var err error
	rss := memtest.PeakRSS(t, "import", func() error {
		_, err = Import(context.Background(), ImportConfig{Out: out, Sources: []string{src}})
		if err == nil || !strings.Contains(err.Error(), "its rules YAML would be larger than the 4 MiB a rules-folder file may hold") {
			return fmt.Errorf("import: %v", err)
		}
		return nil
	})
	t.Logf("peak RSS importing 38 MB: %d MB", rss>>20)
	if rss > 100<<20 {
		t.Errorf("peak RSS %d MB, want < 100 MB", rss>>20)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("out written: %v", err)
	}
	rss = memtest.PeakRSS(t, "load", func() error {
		rs, err := Load(context.Background(), LoadConfig{Sources: []string{src}})
		if err != nil || rs.Len() == 0 {
			return fmt.Errorf("load: %v", err)
		}
		return nil
	})
	t.Logf("peak RSS loading 38 MB as a source: %d MB", rss>>20)
}

// TestImportEmptyCTID: a CTID file with neither metadata nor rows names no release; its YAML
// would not load back, so it is refused (found by FuzzDecodeSource).
func TestImportEmptyCTID(t *testing.T) {
	src := filepath.Join(ctidTestdata(t, "valid"), "empty-object.json")
	_, err := Import(context.Background(), ImportConfig{Out: filepath.Join(t.TempDir(), "out"), Sources: []string{src}})
	want := src + ": metadata.mapping_framework: no framework in metadata, rows or file name: nothing to import"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n got: %v\nwant: %s", err, want)
	}
}
