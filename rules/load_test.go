package rules

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ctidTestdata(t testing.TB, sub string) string {
	return filepath.Join(moduleRoot(t), "rules", "testdata", "ctid", sub)
}

func TestCTIDContentErrors(t *testing.T) {
	cases := []struct{ file, want string }{
		{"bad-technique.json", `bad-technique.json: row 2: attack_object_id "T12": not an ATT&CK technique ID (want T1234 or T1234.567)`},
		{"bad-related-score.json", `bad-related-score.json: row 1: related_score "parent": not an ATT&CK technique ID (want the parent technique, T1234)`},
	}
	for _, c := range cases {
		data, err := os.ReadFile(filepath.Join(ctidTestdata(t, "content"), c.file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = DecodeCTID(c.file, data)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got: %v\nwant: %s", c.file, err, c.want)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: not ErrInvalid", c.file)
		}
	}
	// Schema errors come through as ContentError too.
	data, _ := os.ReadFile(filepath.Join(ctidTestdata(t, "invalid"), "wrong-type-capability-id.json"))
	_, err := DecodeCTID("x.json", data)
	var ce *ContentError
	if !errors.As(err, &ce) || ce.Row != 2 || ce.Field != "capability_id" || err.Error() != "x.json: row 2: capability_id: got number, want string or null" {
		t.Errorf("got %v", err)
	}
}

func TestCTIDHandMadeFile(t *testing.T) {
	p := filepath.Join(ctidTestdata(t, "valid"), "acme-2.0_attack-16.1-enterprise.json")
	rs, err := Load(context.Background(), LoadConfig{Sources: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	rep := rs.Report()
	if rep.Skipped[SkipNonMappable] != 1 || rep.Skipped[SkipNullMappingType] != 1 {
		t.Errorf("skipped %v", rep.Skipped)
	}
	ms := rs.Mappings("T1021.002")
	if len(ms) != 2 {
		t.Fatalf("%d mappings", len(ms))
	}
	edr := ms[0]
	if ms[1].CapabilityID != "acme_fw" || edr.CapabilityID != "acme_edr" || edr.ScoreCategory != "detect" {
		t.Fatalf("order: %s/%s %s/%s", ms[0].CapabilityID, ms[0].ScoreCategory, edr.CapabilityID, edr.ScoreCategory)
	}
	if len(edr.Alerts) != 1 || edr.Alerts[0] != (ProductAlert{ID: "7001", Name: "Lateral SMB"}) ||
		len(edr.Events) != 1 || edr.Events[0].ID != "5145" || !strings.Contains(edr.Comments, "external ID 7001") {
		t.Errorf("edr %+v", edr)
	}
	// The T1077 row (revoked) lands on T1021.002 but is the same mapping as row 1: merged.
	if len(rep.Revoked) != 1 || !strings.Contains(rep.Revoked[0], "T1077") || rep.Duplicates+rep.Merged != 1 {
		t.Errorf("revoked %v dup %d merged %d", rep.Revoked, rep.Duplicates, rep.Merged)
	}
	if p, parent := rs.ParentMappings("T1021.002"); p != "T1021" || len(parent) != 1 || parent[0].RelatedScore != "" {
		t.Errorf("parent %s %v", p, parent)
	}

	// An unknown mapping type is kept, filed as related, and reported.
	u := filepath.Join(ctidTestdata(t, "valid"), "unknown-mapping-type.json")
	rs, err = Load(context.Background(), LoadConfig{Sources: []string{u}})
	if err != nil {
		t.Fatal(err)
	}
	if ms := rs.Mappings("T1021.002"); len(ms) != 1 || ms[0].Kind != KindRelated || ms[0].MappingType != "detects_sometimes" {
		t.Errorf("unknown type: %+v", ms)
	}
	if len(rs.Report().Unknown) != 1 || !strings.Contains(rs.Report().Unknown[0], `unknown mapping_type "detects_sometimes"`) {
		t.Errorf("unknown %v", rs.Report().Unknown)
	}
	// An unknown score value is kept and reported, not fatal.
	b := filepath.Join(ctidTestdata(t, "invalid"), "bad-score-value.json")
	rs, err = Load(context.Background(), LoadConfig{Sources: []string{b}})
	if err != nil {
		t.Fatal(err)
	}
	if ms := rs.Mappings("T1021.002"); len(ms) != 1 || ms[0].ScoreValue != "high" ||
		len(rs.Report().Unknown) != 1 || !strings.Contains(rs.Report().Unknown[0], `unknown score_value "high"`) {
		t.Errorf("unknown score: %v", rs.Report().Unknown)
	}
	// Files without metadata load (the schema allows it).
	for _, f := range []string{"no-metadata.json", "empty-object.json"} {
		if _, err := Load(context.Background(), LoadConfig{Sources: []string{filepath.Join(ctidTestdata(t, "valid"), f)}}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestLoadURL(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(ctidTestdata(t, "valid"), "acme-2.0_attack-16.1-enterprise.json"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/acme.json":
			w.Write(data)
		case "/slow.json":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx := context.Background()
	rs, err := Load(ctx, LoadConfig{Sources: []string{srv.URL + "/acme.json"}, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Mappings("T1021.002")) != 2 || rs.Sources()[0].Path != srv.URL+"/acme.json" {
		t.Errorf("from URL: %d mappings, path %s", len(rs.Mappings("T1021.002")), rs.Sources()[0].Path)
	}
	_, err = Load(ctx, LoadConfig{Sources: []string{srv.URL + "/missing.json"}, HTTPClient: srv.Client()})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "/missing.json") {
		t.Errorf("404: %v", err)
	}
	start := time.Now()
	_, err = Load(ctx, LoadConfig{Sources: []string{srv.URL + "/slow.json"}, HTTPClient: srv.Client(), FetchTimeout: 100 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %s", err, time.Since(start))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = Load(cctx, LoadConfig{Sources: []string{srv.URL + "/acme.json"}, HTTPClient: srv.Client()}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err = Load(ctx, LoadConfig{Sources: []string{"ftp://example.com/x.json"}}); err == nil {
		t.Error("ftp accepted")
	}
}

func TestLoadBuiltinWhenEmpty(t *testing.T) {
	rs, err := Load(context.Background(), LoadConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Version() != BuiltinVersion || len(rs.Mappings("T1021.002")) == 0 {
		t.Errorf("version %s, %d mappings", rs.Version(), len(rs.Mappings("T1021.002")))
	}
}

func TestLoadDirWithTablesAndSources(t *testing.T) {
	dir := t.TempDir()
	f, err := LoadSource(context.Background(), nil, 0, filepath.Join(ctidTestdata(t, "valid"), "acme-2.0_attack-16.1-enterprise.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(dir, f); err != nil {
		t.Fatal(err)
	}
	aliases := "aliases:\n  - {from: acme_edr, to: acme_xdr, name: Acme XDR}\n"
	if err := os.WriteFile(filepath.Join(dir, AliasesFile), []byte(aliases), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := Load(context.Background(), LoadConfig{Dir: dir, KeepAllReleases: true,
		Sources: []string{filepath.Join(ctidTestdata(t, "valid"), "unknown-mapping-type.json")}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range rs.Mappings("T1021.002") {
		ids = append(ids, m.CapabilityID+":"+m.Capability)
	}
	if got := strings.Join(ids, " "); got != "acme_fw:Acme Firewall acme_xdr:Acme XDR acme_xdr:Acme XDR" {
		t.Errorf("got %s", got)
	}
	// A broken YAML file in the folder is named in the error.
	bad := "source: {framework: acme}\nmappings:\n  - {technique: T1021.002, capability_id: x, mapping_type: mitigates}\n  - {technique: X1, capability_id: y, mapping_type: mitigates}\n"
	if err := os.WriteFile(filepath.Join(dir, "zz-bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), LoadConfig{Dir: dir})
	want := filepath.Join(dir, "zz-bad.yaml") + `: row 2: technique "X1": not an ATT&CK technique ID (want T1234 or T1234.567)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}
