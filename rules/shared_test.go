package rules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
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

// sharedDir returns ../shared/data/SUB beside the repository. It skips the test when
// ../shared is absent, and fails it when ../shared is there but SUB is not.
func sharedDir(t testing.TB, sub string) string {
	t.Helper()
	root := filepath.Join(moduleRoot(t), "..", "shared")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("shared data not found at %s (it lives beside the repository, not in it): %v", root, err)
	}
	dir := filepath.Join(root, "data", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shared data is present but incomplete: %v", err)
	}
	return dir
}

// sharedMappingFiles lists every CTID mapping file in ../shared/data/mappings.
func sharedMappingFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(sharedDir(t, "mappings"), "*_attack-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no mapping files: %v", err)
	}
	return files
}

func sharedFile(t testing.TB, name string) string {
	return filepath.Join(sharedDir(t, "mappings"), name)
}

func load(t testing.TB, keepAll bool, sources ...string) *Ruleset {
	t.Helper()
	rs, err := Load(context.Background(), LoadConfig{Sources: sources, KeepAllReleases: keepAll})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func byKind(ms []*Mapping, k Kind, framework string) []*Mapping {
	var out []*Mapping
	for _, m := range ms {
		if m.Kind == k && (framework == "" || m.Source.Framework == framework) {
			out = append(out, m)
		}
	}
	return out
}

const (
	nistRev5v14 = "nist_800_53-rev5_attack-14.1-enterprise.json"
	nistRev5v16 = "nist_800_53-rev5_attack-16.1-enterprise.json"
	azure2021   = "azure-06.29.2021_attack-8.2-enterprise.json"
	azure2025   = "azure-04.26.2025_attack-16.1-enterprise.json"
	m365        = "m365-07.18.2025_attack-16.1-enterprise.json"
	aws         = "aws-12.12.2024_attack-16.1-enterprise.json"
)

func TestSharedLoadAll(t *testing.T) {
	files := sharedMappingFiles(t)
	rs := load(t, false, files...)
	rep := rs.Report()
	if len(rep.Files) != len(files) {
		t.Fatalf("files %d, want %d", len(rep.Files), len(files))
	}
	// Newest wins: NIST rev5 14.1, Azure 2021 and VERIS 1.3.7 give way.
	var dropped []string
	for _, s := range rep.Dropped {
		dropped = append(dropped, filepath.Base(s.Path))
	}
	sort.Strings(dropped)
	want := []string{azure2021, nistRev5v14, "veris-1.3.7_attack-12.1-enterprise.json"}
	if strings.Join(dropped, " ") != strings.Join(want, " ") {
		t.Errorf("dropped %v, want %v", dropped, want)
	}
	if len(rep.Unknown) != 0 {
		t.Errorf("unknown values in shared files: %v", rep.Unknown)
	}
	if rs.Len() < 15000 || len(rs.Techniques()) < 500 {
		t.Errorf("only %d mappings over %d techniques", rs.Len(), len(rs.Techniques()))
	}
	// T1053.001 (At (Linux)) is revoked; its rows move to T1053.002.
	found := false
	for _, r := range rep.Revoked {
		found = found || strings.Contains(r, "T1053.001")
	}
	if !found {
		t.Errorf("T1053.001 not reported as revoked: %v", rep.Revoked)
	}
	if len(rs.Mappings("T1053.001")) != 0 {
		t.Error("revoked T1053.001 still has mappings")
	}
	for _, m := range rs.Mappings("T1053.002") {
		if m.SourceTechnique == "T1053.001" && m.RelatedScore != "T1053" {
			t.Errorf("moved mapping %s related_score %q", m.CapabilityID, m.RelatedScore)
		}
	}
	all := load(t, true, files...)
	if len(all.Report().Dropped) != 0 || all.Len() <= rs.Len() {
		t.Errorf("keep all: dropped %d, %d mappings (newest only: %d)", len(all.Report().Dropped), all.Len(), rs.Len())
	}
	t.Logf("newest: %d mappings, %d techniques; keep all: %d mappings, %d conflicts, %d duplicates, %d merged",
		rs.Len(), len(rs.Techniques()), all.Len(), len(all.Report().Conflicts), all.Report().Duplicates, all.Report().Merged)
}

func controlSet(t *testing.T, rs *Ruleset, id string) []string {
	t.Helper()
	var out []string
	for _, m := range byKind(rs.Mappings(id), KindControl, "nist_800_53") {
		out = append(out, m.CapabilityID+" "+m.MappingType)
	}
	return out
}

func TestSharedNISTRev5SameInBothReleases(t *testing.T) {
	old := load(t, false, sharedFile(t, nistRev5v14))
	cur := load(t, false, sharedFile(t, nistRev5v16))
	a, b := controlSet(t, old, "T1021.002"), controlSet(t, cur, "T1021.002")
	if len(a) != 16 || len(b) != 16 {
		t.Fatalf("controls: 14.1 has %d, 16.1 has %d, want 16 each", len(a), len(b))
	}
	sort.Strings(a)
	sort.Strings(b)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("14.1 and 16.1 disagree:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	for _, m := range byKind(old.Mappings("T1021.002"), KindControl, "") {
		if m.CapabilityID == "AC-2" {
			if m.SourceCapabilityID != "AC-02" || m.SourceMappingType != "protects" || m.MappingType != "mitigates" {
				t.Errorf("AC-2 = %+v", m)
			}
		}
		if strings.Contains(m.CapabilityID, "-0") {
			t.Errorf("not canonical: %s", m.CapabilityID)
		}
	}
	// Both loaded and kept: one mapping per control, the 16.1 one, with 14.1 in AlsoIn.
	both := load(t, true, sharedFile(t, nistRev5v14), sharedFile(t, nistRev5v16))
	ms := byKind(both.Mappings("T1021.002"), KindControl, "")
	if len(ms) != 16 {
		t.Fatalf("both releases: %d controls", len(ms))
	}
	for _, m := range ms {
		if m.Source.AttackVersion != "16.1" || len(m.AlsoIn) != 1 || m.AlsoIn[0].AttackVersion != "14.1" {
			t.Errorf("%s from %s also in %v", m.CapabilityID, m.Source.Label(), m.AlsoIn)
		}
	}
	// Default: the 14.1 file is dropped.
	def := load(t, false, sharedFile(t, nistRev5v14), sharedFile(t, nistRev5v16))
	if d := def.Report().Dropped; len(d) != 1 || d[0].AttackVersion != "14.1" {
		t.Errorf("dropped %v", d)
	}
	// rev4 is a different catalog, not an older release of rev5.
	rev4 := load(t, false, sharedFile(t, "nist_800_53-rev4_attack-14.1-enterprise.json"), sharedFile(t, nistRev5v16))
	if len(rev4.Report().Dropped) != 0 || len(byKind(rev4.Mappings("T1021.002"), KindControl, "")) != 32 {
		t.Errorf("rev4+rev5: dropped %v, %d controls", rev4.Report().Dropped, len(byKind(rev4.Mappings("T1021.002"), KindControl, "")))
	}
}

func defenderForIdentity(t *testing.T, rs *Ruleset) []*Mapping {
	t.Helper()
	var out []*Mapping
	for _, m := range rs.Mappings("T1021.002") {
		if m.CapabilityID == "microsoft_defender_for_identity" {
			out = append(out, m)
		}
	}
	return out
}

func TestSharedDefenderForIdentityOnce(t *testing.T) {
	check := func(name string, rs *Ruleset, wantFramework string, wantAlso int) {
		ms := defenderForIdentity(t, rs)
		if len(ms) != 1 {
			t.Fatalf("%s: %d Defender for Identity mappings", name, len(ms))
		}
		m := ms[0]
		var ids []string
		for _, a := range m.Alerts {
			ids = append(ids, a.ID+" "+a.Name)
		}
		if strings.Join(ids, "|") != "2019 Remote code execution attempt|2030 Data exfiltration over SMB" {
			t.Errorf("%s: alerts %q", name, ids)
		}
		if m.Capability != "Microsoft Defender for Identity" || m.Source.Framework != wantFramework ||
			len(m.AlsoIn) != wantAlso || m.ScoreCategory != "detect" || m.ScoreValue != "minimal" ||
			m.MappingType != "technique_scores" || !strings.Contains(m.Comments, "(external ID 2019)") {
			t.Errorf("%s: %+v", name, m)
		}
	}
	check("azure 2021", load(t, false, sharedFile(t, azure2021)), "azure", 0)
	check("m365", load(t, false, sharedFile(t, m365)), "m365", 0)
	both := load(t, false, sharedFile(t, azure2021), sharedFile(t, m365))
	check("both", both, "m365", 1)
	if also := defenderForIdentity(t, both)[0].AlsoIn[0]; also.Framework != "azure" || also.FrameworkVersion != "06/29/2021" {
		t.Errorf("also in %v", also)
	}
}

func TestSharedAzureRenamesOneProduct(t *testing.T) {
	old := load(t, false, sharedFile(t, azure2021))
	cur := load(t, false, sharedFile(t, azure2025))
	ids := func(rs *Ruleset) string {
		var out []string
		for _, m := range byKind(rs.Mappings("T1021.002"), KindDetection, "azure") {
			out = append(out, m.CapabilityID+"/"+m.ScoreCategory+"/"+m.ScoreValue)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	want := "azure_network_security_groups/protect/partial azure_network_watcher_traffic_analytics/detect/partial microsoft_sentinel/detect/minimal"
	if got := ids(cur); got != want {
		t.Errorf("2025: %s", got)
	}
	if got := ids(old); got != strings.Replace(want, " microsoft_sentinel", " microsoft_defender_for_identity/detect/minimal microsoft_sentinel", 1) {
		t.Errorf("2021: %s", got)
	}
	for _, m := range old.Mappings("T1021.002") {
		if m.CapabilityID == "microsoft_sentinel" {
			if m.SourceCapabilityID != "azure_sentinel" || m.Capability != "Microsoft Sentinel" ||
				strings.Join(m.Queries, "|") != "Anomalous Resource Access" ||
				len(m.Events) != 1 || m.Events[0] != (WindowsEvent{ID: "4624", LogonType: "3"}) {
				t.Errorf("sentinel: %+v", m)
			}
		}
	}
}

func TestSharedAWS(t *testing.T) {
	rs := load(t, false, sharedFile(t, aws))
	var got []string
	for _, m := range byKind(rs.Mappings("T1021.002"), KindDetection, "aws") {
		got = append(got, m.CapabilityID+" "+m.ScoreCategory+"/"+m.ScoreValue+" "+m.RelatedScore)
	}
	want := "amazon_virtual_private_cloud protect/partial T1021|aws_network_firewall protect/partial T1021"
	if strings.Join(got, "|") != want {
		t.Errorf("got %q", got)
	}
	if p, ms := rs.ParentMappings("T1021.002"); p != "T1021" || len(ms) == 0 {
		t.Errorf("parent %s has %d mappings", p, len(ms))
	}
}

// TestSharedSkippedCounts counts, with a separate plain decode, the rows each file holds that
// enricher must skip, and compares with what the loader reports.
func TestSharedSkippedCounts(t *testing.T) {
	total := 0
	for _, path := range sharedMappingFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Rows []struct {
				MappingType *string `json:"mapping_type"`
				Status      string  `json:"status"`
				Capability  *string `json:"capability_id"`
				Technique   *string `json:"attack_object_id"`
			} `json:"mapping_objects"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for _, r := range doc.Rows {
			switch {
			case r.MappingType == nil || *r.MappingType == "":
				want[SkipNullMappingType]++
			case *r.MappingType == "non_mappable" || r.Status == "non_mappable":
				want[SkipNonMappable]++
			case r.Capability == nil || *r.Capability == "":
				want[SkipNoCapability]++
			case r.Technique == nil || *r.Technique == "":
				want[SkipNoTechnique]++
			}
		}
		f, err := DecodeCTID(path, data)
		if err != nil {
			t.Fatal(err)
		}
		got := f.Source.Skipped
		if len(got) != len(want) {
			t.Errorf("%s: skipped %v, want %v", filepath.Base(path), got, want)
		}
		n := 0
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: skipped %s = %d, want %d", filepath.Base(path), k, got[k], v)
			}
			n += v
		}
		if len(f.Mappings)+n != len(doc.Rows) || f.Source.Rows != len(doc.Rows) {
			t.Errorf("%s: %d mappings + %d skipped != %d rows", filepath.Base(path), len(f.Mappings), n, len(doc.Rows))
		}
		rs, err := Build([]*File{f}, mustTables(t), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if byFile := rs.Report().SkippedByFile[path]; len(byFile) != len(want) {
			t.Errorf("%s: report %v, want %v", filepath.Base(path), byFile, want)
		}
		total += n
	}
	// The files as copied hold 89+89+96 NIST, 10 AWS, 18 GCP and 51+52 VERIS rows to skip.
	if total != 405 {
		t.Errorf("skipped %d rows in all, want 405", total)
	}
}

func mustTables(t testing.TB) *Tables {
	t.Helper()
	tb, err := LoadTables()
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestSharedImportRoundTrip imports every shared file into the rules format and checks that
// the folder loads to the same ruleset as the JSON.
func TestSharedImportRoundTrip(t *testing.T) {
	files := sharedMappingFiles(t)
	dir := t.TempDir()
	for _, p := range files {
		f, err := LoadSource(context.Background(), nil, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := WriteFile(dir, f); err != nil {
			t.Fatal(err)
		}
	}
	direct := load(t, true, files...)
	imported, err := Load(context.Background(), LoadConfig{Dir: dir, KeepAllReleases: true})
	if err != nil {
		t.Fatal(err)
	}
	if direct.Hash() != imported.Hash() || direct.Len() != imported.Len() {
		t.Errorf("imported folder differs: %d mappings %s vs %d %s", imported.Len(), imported.Hash(), direct.Len(), direct.Hash())
	}
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	if a, b := sum(direct.Report().Skipped), sum(imported.Report().Skipped); a != b {
		t.Errorf("skipped: direct %d, imported %d", a, b)
	}
}
