//go:build integration

package elastic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

// detailIndices returns a state index and a detail index of the test's own.
func detailIndices(t *testing.T, c *elastic.Client) (state, details string) {
	t.Helper()
	n := fmt.Sprintf("%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000))
	state, details = ".enricher-state-test-"+n, "enricher-mapping-details-test-"+n
	t.Cleanup(func() {
		for _, ix := range []string{state, details} {
			c.Do(context.Background(), "other", http.MethodDelete, "/"+ix, url.Values{"expand_wildcards": {"all"}}, nil)
		}
	})
	return state, details
}

// fakeDetails is a DetailSource with n small documents under its own ruleset hash.
type fakeDetails struct {
	hash string
	n    int
}

func (f fakeDetails) DetailVersion() (string, string) { return f.hash, "fake" }
func (f fakeDetails) EachDetail(fn func(string, []byte) error) error {
	for i := range f.n {
		doc := fmt.Sprintf(`{"ref":%q,"format":%q,"ruleset":{"hash":%q},"technique":"T%04d","kind":"control"}`,
			enrich.DetailRef(fmt.Sprintf("T%04d", 1000+i), f.hash), enrich.DetailFormat, f.hash, 1000+i)
		if err := fn(fmt.Sprintf("%s-%d", f.hash[48:], i), []byte(doc)); err != nil {
			return err
		}
	}
	return nil
}

// The detail index is written once per ruleset: a second publication (a restart) writes
// nothing, one that lost its marker (a crash before it) creates no duplicate, and the
// documents a reference names are the technique's mappings, comments included.
func TestDetailIndexOncePerRuleset(t *testing.T) {
	c := newClient(t, esURL(), nil)
	stateX, detailsX := detailIndices(t, c)
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true})
	want := 0
	attack.EachDetail(func(string, []byte) error { want++; return nil })
	ctx := context.Background()
	newDetails := func() *elastic.Details {
		return elastic.NewDetails(c, detailsX, elastic.NewState(c, stateX, nil, "test"), testLogger(t))
	}
	res, err := newDetails().Publish(ctx, attack)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != want || res.Existing != 0 || res.Skipped {
		t.Fatalf("first publication: %+v, want %d written", res, want)
	}
	// A restart: a new publisher finds the marker and writes nothing.
	if res, err = newDetails().Publish(ctx, attack); err != nil || !res.Skipped || res.Written != 0 {
		t.Fatalf("second publication: %+v %v", res, err)
	}
	// A publication that crashed before its marker: every document is there already.
	c.Do(ctx, "other", http.MethodDelete, "/"+stateX+"/_doc/details-1-"+rs.Hash(), url.Values{"refresh": {"true"}}, nil)
	if res, err = newDetails().Publish(ctx, attack); err != nil || res.Written != 0 || res.Existing != want {
		t.Fatalf("publication without marker: %+v %v, want %d existing", res, err, want)
	}
	hits := searchAll(t, c, detailsX, map[string]any{"match_all": map[string]any{}})
	if len(hits) != want {
		t.Fatalf("%d documents, want %d", len(hits), want)
	}
	for _, h := range hits {
		if h.Version != 1 {
			t.Fatalf("%s: _version %d: written more than once", h.ID, h.Version)
		}
	}
	// The alert's reference finds the technique's mappings with their free text.
	ref := enrich.DetailRef("T1021.002", rs.Hash())
	hits = searchAll(t, c, detailsX, map[string]any{"term": map[string]any{"ref": ref}})
	var controls, products []string
	comments := 0
	for _, h := range hits {
		switch h.Source["kind"] {
		case "control":
			controls = append(controls, h.Source["capability_id"].(string))
		case "detection":
			products = append(products, h.Source["name"].(string))
			if s, _ := h.Source["comments"].(string); s != "" {
				comments++
			}
		}
	}
	sort.Strings(products)
	if len(controls) != 16 || strings.Join(products, ",") != "Azure Network Security Groups,Azure Network Watcher: Traffic Analytics,Microsoft Defender for Identity,Microsoft Sentinel" || comments == 0 {
		t.Fatalf("ref %s: controls %v, products %v, %d with comments", ref, controls, products, comments)
	}
	// A detail index deleted (and made again) under a complete marker: the documents are
	// counted, not trusted, and written again.
	c.Do(ctx, "other", http.MethodDelete, "/"+detailsX, nil, nil)
	if res, err = newDetails().Publish(ctx, attack); err != nil || res.Written != want || res.Skipped {
		t.Fatalf("publication after the index was deleted: %+v %v, want %d written", res, err, want)
	}
	// comments are full text: a word of one finds it.
	if hits := searchAll(t, c, detailsX, map[string]any{"match": map[string]any{"comments": "SMB"}}); len(hits) == 0 {
		t.Fatal("comments are not searchable as text")
	}
}

// Publishing a fourth ruleset removes the oldest one's documents and marker; the three
// newest stay.
func TestDetailIndexOldVersionsGo(t *testing.T) {
	c := newClient(t, esURL(), nil)
	stateX, detailsX := detailIndices(t, c)
	ctx := context.Background()
	var srcs []fakeDetails
	for i := range 4 {
		srcs = append(srcs, fakeDetails{hash: fmt.Sprintf("%064x", i+1), n: 1200}) // more than one search page
		d := elastic.NewDetails(c, detailsX, elastic.NewState(c, stateX, nil, "test"), testLogger(t))
		d.Grace = 0 // no daemon uses the older rulesets
		res, err := d.Publish(ctx, srcs[i])
		if err != nil {
			t.Fatal(err)
		}
		if wantRemoved := max(0, i+1-elastic.DetailVersionsKept); res.Removed != wantRemoved || res.Written != 1200 {
			t.Fatalf("publication %d: %+v, want %d removed", i, res, wantRemoved)
		}
		// Documents of a ruleset the cleanup removes were written long before, and visible.
		if err := sample.Refresh(ctx, c, []string{stateX, detailsX}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // distinct publication times
	}
	count := func(hash string) int {
		body, _ := json.Marshal(map[string]any{"query": map[string]any{"term": map[string]any{"ruleset.hash": hash}}})
		sample.Refresh(ctx, c, []string{detailsX})
		code, resp, err := c.Do(ctx, "other", http.MethodPost, "/"+detailsX+"/_count", nil, body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("count: %v %s", err, resp)
		}
		var r struct{ Count int }
		json.Unmarshal(resp, &r)
		return r.Count
	}
	if n := count(srcs[0].hash); n != 0 {
		t.Fatalf("oldest ruleset: %d documents left", n)
	}
	for _, s := range srcs[1:] {
		if n := count(s.hash); n != 1200 {
			t.Fatalf("ruleset %s: %d documents, want 1200", s.hash[:8], n)
		}
	}
	code, _, _ := c.Do(ctx, "other", http.MethodGet, "/"+stateX+"/_doc/details-1-"+srcs[0].hash, nil, nil)
	if code != http.StatusNotFound {
		t.Fatalf("oldest marker: status %d, want 404", code)
	}

	// A ruleset in use (its publication renewed: a daemon's heartbeat, a rollback) is
	// the most recently used: publishing a new one removes another.
	d := elastic.NewDetails(c, detailsX, elastic.NewState(c, stateX, nil, "test"), testLogger(t))
	d.Grace = 0
	if res, err := d.Publish(ctx, srcs[1]); err != nil || !res.Skipped || res.Removed != 0 {
		t.Fatalf("renewal: %+v %v", res, err)
	}
	sample.Refresh(ctx, c, []string{stateX})
	time.Sleep(10 * time.Millisecond)
	newest := fakeDetails{hash: fmt.Sprintf("%064x", 9), n: 10}
	if res, err := d.Publish(ctx, newest); err != nil || res.Removed != 1 {
		t.Fatalf("fifth publication: %+v %v, want 1 removed", res, err)
	}
	if n := count(srcs[1].hash); n != 1200 {
		t.Fatalf("the renewed ruleset lost its details: %d left", n)
	}
	if n := count(srcs[2].hash); n != 0 {
		t.Fatalf("the least recently used ruleset kept %d details", n)
	}
	// Within the grace period nothing is removed, however many rulesets there are.
	d.Grace = time.Hour
	if res, err := d.Publish(ctx, fakeDetails{hash: fmt.Sprintf("%064x", 10), n: 10}); err != nil || res.Removed != 0 {
		t.Fatalf("publication within grace: %+v %v", res, err)
	}
}

// The daemon's path: a runner publishes the details of its ruleset when it registers its
// generation; the alerts' references resolve; the full shape still writes every mapping
// whole; and the offline enrich path computes the same root object as the daemon.
func TestDetailsFromRunnerAndShapes(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := newClient(t, esURL(), m)
	s := space(t, c)
	docs := kibanaDocs(s, 200, 11)
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	_, detailsX := detailIndices(t, c)
	h := newHarness(t, c, m, []string{".alerts-security.alerts-" + string(s)}, nil)
	h.r.SetDetails(elastic.NewDetails(c, detailsX, h.state, testLogger(t)))
	if _, err := h.r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	hits := searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.techniques": "T1021.002"}})
	if len(hits) == 0 {
		t.Fatal("no T1021.002 alert")
	}
	rs, _ := rules.LoadBuiltin(rules.Options{})
	offline := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true})
	for _, hit := range hits {
		r := root(hit)
		refs, _ := r["details"].([]any)
		if len(refs) == 0 {
			t.Fatalf("%s: no details reference: %v", hit.ID, r)
		}
		for _, ref := range refs {
			if n := len(searchAll(t, c, detailsX, map[string]any{"term": map[string]any{"ref": ref}})); n == 0 {
				t.Fatalf("%s: reference %v finds no details", hit.ID, ref)
			}
		}
		// The offline path (enricher enrich) computes the same object from the same source.
		src := map[string]any{}
		for k, v := range hit.Source {
			if k != "attack_mappings" {
				src[k] = v
			}
		}
		b, _ := json.Marshal(offline.Document(src, "t"))
		var want map[string]any
		json.Unmarshal(b, &want)
		for _, k := range []string{"enriched_at", "ruleset", "pending_stages"} {
			delete(want, k)
			delete(r, k)
		}
		gotJSON, _ := json.Marshal(r)
		wantJSON, _ := json.Marshal(want)
		if string(gotJSON) != string(wantJSON) {
			t.Fatalf("%s: daemon and offline enrich differ:\ndaemon  %s\noffline %s", hit.ID, gotJSON, wantJSON)
		}
	}

	// output.detail: full, a new generation: every mapping whole on the alert again.
	full := enrich.NewAttackStage(rs, enrich.AttackOptions{InheritParent: true, Detail: enrich.DetailFull})
	p, err := enrich.NewPipeline([]enrich.PipelineStage{{Stage: full, Required: true}}, "attack_mappings", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarnessState(t, c, m, []string{".alerts-security.alerts-" + string(s)}, p, h.stateX,
		elastic.StoreOptions{Indices: []string{".alerts-security.alerts-" + string(s)}, InstallMappings: true, MaxRequestItems: 50}, testOptions())
	if res, err := h2.r.RunOnce(ctx); err != nil || res.Written != len(docs) {
		t.Fatalf("full shape run: %+v %v", res, err)
	}
	hits = searchAll(t, c, s.Alias(), map[string]any{"term": map[string]any{"attack_mappings.detections.capability_id": "microsoft_defender_for_identity"}})
	if len(hits) == 0 {
		t.Fatal("full shape: no alert found by detections.capability_id")
	}
	for _, hit := range hits {
		dets := root(hit)["detections"].([]any)
		withComments := 0
		for _, d := range dets {
			if s, _ := d.(map[string]any)["comments"].(string); s != "" {
				withComments++
			}
		}
		if ctl := root(hit)["controls"].([]any); len(ctl) < 16 || withComments == 0 {
			t.Fatalf("%s: full shape has %d controls, %d detections with comments", hit.ID, len(ctl), withComments)
		}
		if _, ok := ctl0(root(hit))["framework_version"]; !ok {
			t.Fatalf("%s: full shape lacks provenance: %v", hit.ID, ctl0(root(hit)))
		}
	}
}

func ctl0(r map[string]any) map[string]any {
	c, _ := r["controls"].([]any)
	if len(c) == 0 {
		return nil
	}
	m, _ := c[0].(map[string]any)
	return m
}

// Wazuh 4.x alerts in daily indices (a new day's index made by dynamic mapping): enriched,
// and where the rule's own NIST tags differ from CTID's mappings, the alert says so in a
// field an analyst filters on.
func TestWazuhDailyIndicesComplianceCheck(t *testing.T) {
	c := newClient(t, esURL(), nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("wazuh-alerts-4.x-t%d%04d-", time.Now().UnixNano()%1e9, rand.IntN(10000))
	t.Cleanup(func() { c.Do(ctx, "other", http.MethodDelete, "/"+prefix+"*", nil, nil) })
	var docs []sample.Doc
	for _, d := range sample.Generate(400, 5) {
		if d.Index == sample.WazuhIndex {
			d.Index = prefix + "2026.12.01"
			docs = append(docs, d)
		}
	}
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	indices := []string{prefix + "*"}
	h := newHarness(t, c, nil, indices, nil)
	if res, err := h.r.RunOnce(ctx); err != nil || res.Written != len(docs) {
		t.Fatalf("first day: %+v %v, want %d written", res, err, len(docs))
	}
	// The next day's index appears (dynamic mapping, as the Wazuh indexer's template does).
	next := docs[0]
	next.Index, next.ID = prefix+"2026.12.02", "next-day"
	if err := sample.Load(ctx, c, []sample.Doc{next}); err != nil {
		t.Fatal(err)
	}
	if res, err := h.r.RunOnce(ctx); err != nil || res.Written != 1 {
		t.Fatalf("second day: %+v %v, want 1 written", res, err)
	}
	hits := searchAll(t, c, prefix+"*", map[string]any{"term": map[string]any{"attack_mappings.compliance_check.differs": true}})
	if len(hits) != len(docs)+1 {
		t.Fatalf("%d alerts say their NIST tags differ, want %d", len(hits), len(docs)+1)
	}
	for _, hit := range hits {
		cc := root(hit)["compliance_check"].(map[string]any)
		if !slices.Contains(cc["only_alert"].([]any), "AU-14") || hit.Source["rule"].(map[string]any)["nist_800_53"] == nil {
			t.Fatalf("%s: %v", hit.ID, cc)
		}
	}
	// The tag CTID does not map is filterable by value.
	if n := len(searchAll(t, c, prefix+"*", map[string]any{"term": map[string]any{"attack_mappings.compliance_check.only_alert": "AU-14"}})); n != len(docs)+1 {
		t.Fatalf("only_alert AU-14 finds %d alerts", n)
	}
}

// Wazuh 5 findings in a data stream, as the Wazuh indexer (OpenSearch) keeps them: found
// by the default pattern's shape, enriched in their backing indices (.ds-…) with the
// rule's own NIST tags (wazuh.rule.compliance.nist_800_53) compared with CTID's, and a
// finding in the backing index a rollover makes is enriched and mapped too. OpenSearch
// only: Elasticsearch's minimal build cannot delete a data stream again (make test runs
// this in its OpenSearch pass).
func TestOpenSearchWazuh5Findings(t *testing.T) {
	c := newClient(t, esURL(), nil)
	ctx := context.Background()
	if srv, err := c.Server(ctx); err != nil || srv.Distribution != elastic.DistributionOpenSearch {
		t.Fatalf("ELASTICSEARCH_URL=%s is %+v (%v): this test needs OpenSearch (make opensearch-up)", esURL(), srv, err)
	}
	stream := fmt.Sprintf("wazuh-findings-v5-t%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000))
	do := func(method, path string, body any) []byte {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		code, resp, err := c.Do(ctx, "other", method, path, nil, b)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s %s: status %d %v %s", method, path, code, err, resp)
		}
		return resp
	}
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodDelete, "/_data_stream/"+stream, nil, nil)
		c.Do(ctx, "other", http.MethodDelete, "/_index_template/"+stream, nil, nil)
	})
	do(http.MethodPut, "/_index_template/"+stream, map[string]any{
		"index_patterns": []string{stream + "*"}, "data_stream": map[string]any{}, "priority": 500,
		"template": map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
			"mappings": map[string]any{"dynamic_templates": []any{map[string]any{"strings": map[string]any{
				"match_mapping_type": "string", "mapping": map[string]any{"type": "keyword"}}}}},
		},
	})
	// Data streams take only create operations.
	load := func(docs []sample.Doc) {
		t.Helper()
		var bulk strings.Builder
		for _, d := range docs {
			src, _ := json.Marshal(d.Source)
			fmt.Fprintf(&bulk, "{\"create\":{\"_index\":%q,\"_id\":%q}}\n%s\n", stream, d.ID, src)
		}
		code, resp, err := c.Do(ctx, "bulk", http.MethodPost, "/_bulk", url.Values{"refresh": {"true"}}, []byte(bulk.String()))
		if err != nil || code != http.StatusOK || strings.Contains(string(resp), `"errors":true`) {
			t.Fatalf("load findings: status %d %v %.500s", code, err, resp)
		}
	}
	var docs []sample.Doc
	for _, d := range sample.Generate(600, 7) {
		if d.Index == sample.Wazuh5Index {
			docs = append(docs, d)
		}
	}
	if len(docs) < 20 {
		t.Fatalf("only %d Wazuh 5 findings in the sample", len(docs))
	}
	load(docs)
	h := newHarness(t, c, nil, []string{stream + "*"}, nil)
	if res, err := h.r.RunOnce(ctx); err != nil || res.Written != len(docs) {
		t.Fatalf("findings: %+v %v, want %d written", res, err, len(docs))
	}
	do(http.MethodPost, "/"+stream+"/_rollover", nil)
	next := docs[0]
	next.ID = "after-rollover"
	load([]sample.Doc{next})
	if res, err := h.r.RunOnce(ctx); err != nil || res.Written != 1 {
		t.Fatalf("after rollover: %+v %v, want 1 written", res, err)
	}

	hits := searchAll(t, c, stream, map[string]any{"match_all": map[string]any{}})
	backing := map[string]bool{}
	for _, hit := range hits {
		backing[hit.Index] = true
		r := root(hit)
		cc, _ := r["compliance_check"].(map[string]any)
		if !strings.HasPrefix(hit.Index, ".ds-"+stream) || hit.Version != 2 || cc == nil ||
			cc["field"] != "wazuh.rule.compliance.nist_800_53" || !slices.Contains(cc["only_alert"].([]any), "AU-14") ||
			cc["differs"] != true || len(r["techniques"].([]any)) == 0 {
			t.Fatalf("%s in %s (version %d): %v", hit.ID, hit.Index, hit.Version, r)
		}
		// CTID maps SI-4 and AC-17 to T1021.002, as the rule's author did.
		if slices.Contains(r["techniques"].([]any), "T1021.002") && strings.Join(anyStrings(cc["both"]), ",") != "AC-17,SI-4" {
			t.Fatalf("%s: %v", hit.ID, cc)
		}
		// Wazuh's own fields are as the indexer wrote them.
		rule := hit.Source["wazuh"].(map[string]any)["rule"].(map[string]any)
		if fmt.Sprint(rule["compliance"].(map[string]any)["nist_800_53"]) != "[AC-17 AU-14 SI-4]" {
			t.Fatalf("%s: Wazuh's compliance tags changed: %v", hit.ID, rule["compliance"])
		}
	}
	if len(hits) != len(docs)+1 || len(backing) != 2 {
		t.Fatalf("%d findings in %d backing indices, want %d in 2", len(hits), len(backing), len(docs)+1)
	}
	// Both backing indices carry enricher's mapping, the one the rollover made included.
	var mappings map[string]struct {
		Mappings struct {
			Properties map[string]any `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(do(http.MethodGet, "/"+stream+"/_mapping", nil), &mappings); err != nil {
		t.Fatal(err)
	}
	for ix, m := range mappings {
		if m.Mappings.Properties["attack_mappings"] == nil {
			t.Fatalf("%s: no attack_mappings mapping", ix)
		}
	}
	if len(mappings) != 2 {
		t.Fatalf("mappings of %d backing indices, want 2", len(mappings))
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// Details of the same ruleset written in an older format (no format field, a marker
// without the format in its id) are replaced, not kept beside the new ones.
func TestDetailIndexOlderFormatReplaced(t *testing.T) {
	c := newClient(t, esURL(), nil)
	stateX, detailsX := detailIndices(t, c)
	ctx := context.Background()
	src := fakeDetails{hash: fmt.Sprintf("%064x", 77), n: 30}
	d := elastic.NewDetails(c, detailsX, elastic.NewState(c, stateX, nil, "test"), testLogger(t))
	if _, err := d.Publish(ctx, fakeDetails{hash: fmt.Sprintf("%064x", 78), n: 1}); err != nil { // makes both indices
		t.Fatal(err)
	}
	var bulk strings.Builder
	for i := range src.n {
		fmt.Fprintf(&bulk, "{\"create\":{\"_index\":%q,\"_id\":\"old-%d\"}}\n{\"ref\":%q,\"ruleset\":{\"hash\":%q}}\n",
			detailsX, i, enrich.DetailRef("T1021", src.hash), src.hash)
	}
	if code, body, err := c.Do(ctx, "other", http.MethodPost, "/_bulk", url.Values{"refresh": {"true"}}, []byte(bulk.String())); err != nil || code != 200 {
		t.Fatalf("old documents: %d %v %s", code, err, body)
	}
	old := fmt.Sprintf(`{"type":"details","hash":%q,"updated":%q,"value":{"index":%q,"documents":30,"state":"complete"}}`,
		src.hash, time.Now().UTC().Format(time.RFC3339), detailsX)
	if code, body, err := c.Do(ctx, "other", http.MethodPut, "/"+stateX+"/_doc/details-"+src.hash, url.Values{"refresh": {"true"}}, []byte(old)); err != nil || code != 201 {
		t.Fatalf("old marker: %d %v %s", code, err, body)
	}
	if _, err := d.Publish(ctx, src); err != nil {
		t.Fatal(err)
	}
	hits := searchAll(t, c, detailsX, map[string]any{"term": map[string]any{"ruleset.hash": src.hash}})
	if len(hits) != src.n {
		t.Fatalf("%d documents of the ruleset, want %d (old format removed)", len(hits), src.n)
	}
	for _, h := range hits {
		if h.Source["format"] != enrich.DetailFormat {
			t.Fatalf("%s: old-format document left: %v", h.ID, h.Source)
		}
	}
	if code, _, _ := c.Do(ctx, "other", http.MethodGet, "/"+stateX+"/_doc/details-"+src.hash, nil, nil); code != http.StatusNotFound {
		t.Fatalf("old marker: status %d, want 404", code)
	}
}
