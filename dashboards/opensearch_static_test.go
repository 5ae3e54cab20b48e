package dashboards

// Checks of the OpenSearch Dashboards saved objects that need no server (the queries run
// against a real OpenSearch in opensearch_test.go, tag integration), and that the
// generated files are what the generators write.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
)

// loadOpenSearch parses opensearch/enricher.ndjson.
func loadOpenSearch(t testing.TB) []SavedObject {
	t.Helper()
	fh, err := os.Open(OpenSearchFile)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	objs, err := ParseNDJSON(fh)
	if err != nil {
		t.Fatalf("%s: %v", OpenSearchFile, err)
	}
	if len(objs) == 0 {
		t.Fatalf("no saved objects in %s", OpenSearchFile)
	}
	return objs
}

// TestOpenSearchSavedObjectsStructure checks the OpenSearch Dashboards objects without a
// server: the Kibana 7.10 format (types, migration versions, index pattern attributes,
// references by indexRefName and panelRefName), every query in the KQL subset the
// integration test translates, every visualization's aggs in what it translates, every
// attack_mappings.* field a leaf of enrich.Schema, and every question one the Kibana
// objects ask too (the same KQL query).
func TestOpenSearchSavedObjectsStructure(t *testing.T) {
	objs := loadOpenSearch(t)
	views, uses, queries, errs := PlanOpenSearch(objs)
	for _, err := range errs {
		t.Error(err)
	}
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Type]++
		if !strings.HasPrefix(o.ID, "enricher-os-") {
			t.Errorf("%s %s: IDs start with enricher-os- (re-imported with overwrite, and apart from the Kibana objects)", o.Type, o.ID)
		}
	}
	for typ, min := range map[string]int{"index-pattern": 2, "search": 5, "visualization": 6, "dashboard": 1} {
		if counts[typ] < min {
			t.Errorf("want at least %d %s objects, got %d", min, typ, counts[typ])
		}
	}
	if len(views) == 0 || len(uses) == 0 || len(queries) == 0 {
		t.Fatalf("nothing to check: %d index patterns, %d field uses, %d queries", len(views), len(uses), len(queries))
	}
	leaves := map[string]bool{}
	for _, p := range enrich.SchemaPaths() {
		leaves[enrich.DefaultRoot+"."+p] = true
	}
	for _, u := range uses {
		if strings.HasPrefix(u.Field, enrich.DefaultRoot+".") && !leaves[u.Field] {
			t.Errorf("%s: %s (%s) is not a leaf of enrich.Schema", u.Object, u.Field, u.Use)
		}
	}
	for _, q := range queries {
		if _, ok := views[q.DataView]; !ok {
			t.Errorf("%s: index pattern %q not in the file", q.Object, q.DataView)
		}
	}
	// The Wazuh index pattern uses Wazuh's time field; the detail index has none.
	var wazuh, details bool
	for _, dv := range views {
		switch dv.Title {
		case "wazuh-alerts-*":
			wazuh = true
			if dv.TimeField != "timestamp" {
				t.Errorf("%s: time field %q, want timestamp (Wazuh's)", dv.ID, dv.TimeField)
			}
		case config.DefaultDetailsIndex:
			details = true
			if dv.TimeField != "" {
				t.Errorf("%s: the mapping detail index has no time field, got %q", dv.ID, dv.TimeField)
			}
		}
		if strings.Contains(dv.Title, ".alerts-security") {
			t.Errorf("%s: %q: Elastic Security's alerts index is Kibana's, not on OpenSearch", dv.ID, dv.Title)
		}
	}
	if !wazuh || !details {
		t.Errorf("want index patterns on wazuh-alerts-* and %s (found %v, %v)", config.DefaultDetailsIndex, wazuh, details)
	}
	// Same questions as the Kibana objects.
	_, _, kq, kerrs := Plan(loadKibana(t))
	if len(kerrs) > 0 {
		t.Fatalf("Kibana objects: %v", kerrs)
	}
	asked := map[string]bool{}
	for _, q := range kq {
		asked[kqlString(q.KQL)] = true
	}
	for _, q := range queries {
		if !asked[kqlString(q.KQL)] {
			t.Errorf("%s: its query %s is asked by no Kibana object", q.Object, kqlString(q.KQL))
		}
	}
	// Every panel of the dashboard is in the file, and every visualization is on it.
	onDashboard := map[string]bool{}
	for _, o := range objs {
		if o.Type == "dashboard" {
			for _, r := range o.References {
				onDashboard[r.Type+"/"+r.ID] = true
			}
		}
	}
	for _, o := range objs {
		if o.Type == "visualization" && !onDashboard[o.Type+"/"+o.ID] {
			t.Errorf("visualization %s is on no dashboard", o.ID)
		}
	}
}

// kqlString renders a parsed query canonically (for comparing queries).
func kqlString(n *KQL) string {
	switch n.Op {
	case "":
		return "<all>"
	case "clause":
		if n.Quoted {
			return n.Field + `:"` + n.Value + `"`
		}
		return n.Field + ":" + n.Value
	case "not":
		return "not(" + kqlString(n.Children[0]) + ")"
	}
	parts := make([]string, len(n.Children))
	for i, c := range n.Children {
		parts[i] = kqlString(c)
	}
	return n.Op + "(" + strings.Join(parts, ",") + ")"
}

func TestPlanOpenSearchRejects(t *testing.T) {
	for name, line := range map[string]string{
		"lens":             `{"id":"a","type":"lens","attributes":{"title":"x"},"references":[],"migrationVersion":{"lens":"7.10.0"}}`,
		"newer migration":  `{"id":"a","type":"index-pattern","attributes":{"title":"x"},"references":[],"migrationVersion":{"index-pattern":"8.0.0"}}`,
		"kibana 8 version": `{"id":"a","type":"index-pattern","attributes":{"title":"x"},"references":[],"typeMigrationVersion":"8.0.0","migrationVersion":{"index-pattern":"7.6.0"}}`,
		"fieldAttrs":       `{"id":"a","type":"index-pattern","attributes":{"title":"x","fieldAttrs":"{}"},"references":[],"migrationVersion":{"index-pattern":"7.6.0"}}`,
		"inline index":     `{"id":"s","type":"search","attributes":{"title":"s","columns":["a"],"kibanaSavedObjectMeta":{"searchSourceJSON":"{\"index\":\"a\",\"query\":{\"query\":\"\",\"language\":\"kuery\"},\"filter\":[]}"}},"references":[],"migrationVersion":{"search":"7.9.3"}}`,
		"lucene": `{"id":"a","type":"index-pattern","attributes":{"title":"x"},"references":[],"migrationVersion":{"index-pattern":"7.6.0"}}
{"id":"s","type":"search","attributes":{"title":"s","columns":["a"],"kibanaSavedObjectMeta":{"searchSourceJSON":"{\"indexRefName\":\"r\",\"query\":{\"query\":\"a:b\",\"language\":\"lucene\"},\"filter\":[]}"}},"references":[{"id":"a","name":"r","type":"index-pattern"}],"migrationVersion":{"search":"7.9.3"}}`,
		"avg metric": `{"id":"a","type":"index-pattern","attributes":{"title":"x"},"references":[],"migrationVersion":{"index-pattern":"7.6.0"}}
{"id":"v","type":"visualization","attributes":{"title":"v","visState":"{\"title\":\"v\",\"type\":\"table\",\"params\":{},\"aggs\":[{\"id\":\"1\",\"enabled\":true,\"type\":\"avg\",\"schema\":\"metric\",\"params\":{\"field\":\"n\"}},{\"id\":\"2\",\"enabled\":true,\"type\":\"terms\",\"schema\":\"bucket\",\"params\":{\"field\":\"f\",\"orderBy\":\"1\",\"order\":\"desc\",\"size\":5}}]}","kibanaSavedObjectMeta":{"searchSourceJSON":"{\"indexRefName\":\"r\",\"query\":{\"query\":\"\",\"language\":\"kuery\"},\"filter\":[]}"}},"references":[{"id":"a","name":"r","type":"index-pattern"}],"migrationVersion":{"visualization":"7.10.0"}}`,
		"8.x dashboard panel ref": `{"id":"d","type":"dashboard","attributes":{"title":"d","panelsJSON":"[{\"panelIndex\":\"p1\",\"panelRefName\":\"panel_p1\",\"gridData\":{\"i\":\"p1\"}}]"},"references":[{"id":"d","name":"p1:panel_p1","type":"dashboard"}],"migrationVersion":{"dashboard":"7.9.3"}}`,
	} {
		objs, err := ParseNDJSON(strings.NewReader(line))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, _, errs := PlanOpenSearch(objs); len(errs) == 0 {
			t.Errorf("%s: want an error", name)
		}
	}
}

// TestGeneratedFilesCurrent runs the generators (what `go generate ./dashboards` runs)
// into a temporary directory and checks that kibana/alerts.ndjson and
// opensearch/enricher.ndjson are what they write.
func TestGeneratedFilesCurrent(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	kib, osd := filepath.Join(dir, "alerts.ndjson"), filepath.Join(dir, "enricher.ndjson")
	cmd := exec.Command(goBin, "run", "gen_kibana.go", "gen_opensearch.go", "-o", kib, "-opensearch", osd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen_kibana.go gen_opensearch.go: %v\n%s", err, out)
	}
	for gen, committed := range map[string]string{kib: "kibana/alerts.ndjson", osd: OpenSearchFile} {
		want, err := os.ReadFile(gen)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the generators write: run `go generate ./dashboards`", committed)
		}
	}
}
