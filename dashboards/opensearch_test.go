//go:build integration

package dashboards

// Integration tests of the OpenSearch Dashboards saved objects (opensearch/enricher.ndjson)
// against a real OpenSearch. The harness (started once, torn down in TestMain):
//
//   - OpenSearch at OPENSEARCH_URL (default http://127.0.0.1:9202; `make opensearch-up
//     OS_PORT=9202`). The tests fail when it does not answer, or is not OpenSearch.
//   - Sample alerts from enrich/sample, the sources enricher meets on OpenSearch (Wazuh,
//     Sigma, Elastic Defend; not Elastic Security's, which only Kibana writes), in
//     indices unique to the run: wazuh-alerts-osd<id> with the Wazuh indexer's mapping
//     conventions (every string a keyword, timestamp a date, no date detection),
//     sigma-alerts-osd<id> and logs-endpoint.alerts-osd<id> mapped dynamically; one
//     alert larger than daemon.max_alert_bytes, so one is quarantined. The mapping
//     detail index is enricher-mapping-details-osd<id>, the state index
//     .enricher-state-osd<id>.
//   - bin/enricher built from this checkout, run once (`run --once`) with the rules of
//     the Kibana harness (built-in files and testdata/acme-2.0_attack-16.1-enterprise.json).
//
// Then every saved search and visualization runs as the query OpenSearch Dashboards
// sends: its KQL (DQL) translated, within a time range on the index pattern's time field,
// on the test indices its index pattern matches, with the visualization's aggregations.
//
// Environment: OPENSEARCH_URL; DASHBOARDS_KEEP=1 keeps the test indices.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

const osSampleCount = 1000 // 300 of them are not Kibana's: 100 per source

type osHarness struct {
	url, root, tmp string
	indices        []string // wazuh, sigma, endpoint
	details, state string
	enriched       int // alerts loaded
	cleanups       []func()
}

var (
	osH    *osHarness
	osErr  error
	osOnce sync.Once
)

func osEnv(t *testing.T) *osHarness {
	t.Helper()
	osOnce.Do(func() {
		start := time.Now()
		osH = &osHarness{}
		osErr = osH.start()
		teardown = append(teardown, osH.stop)
		if osErr == nil {
			fmt.Fprintf(os.Stderr, "dashboards: OpenSearch harness ready in %s (%s, %d alerts)\n",
				time.Since(start).Round(time.Millisecond), osH.url, osH.enriched)
		}
	})
	if osErr != nil {
		t.Fatalf("OpenSearch test harness: %v", osErr)
	}
	return osH
}

// wazuhMapping is what the Wazuh indexer's template (wazuh-template.json) gives
// wazuh-alerts-4.x-*, in short: strings as keyword, no date detection, timestamp (the
// time field of Wazuh's index pattern) and @timestamp as dates.
var wazuhMapping = map[string]any{
	"dynamic_templates": []any{map[string]any{"string_as_keyword": map[string]any{
		"match_mapping_type": "string", "mapping": map[string]any{"type": "keyword"}}}},
	"date_detection": false,
	"properties": map[string]any{
		"@timestamp": map[string]any{"type": "date"},
		"timestamp":  map[string]any{"type": "date", "format": "date_optional_time||epoch_millis"},
	},
}

func (o *osHarness) start() error {
	var err error
	if o.root, err = filepath.Abs(".."); err != nil {
		return err
	}
	o.url = strings.TrimRight(os.Getenv("OPENSEARCH_URL"), "/")
	if o.url == "" {
		o.url = "http://127.0.0.1:9202"
	}
	code, body, err := o.do(http.MethodGet, "/", nil)
	var root struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("OpenSearch is not reachable at %s (status %d, %v, %.200s): start it with `make opensearch-up OS_PORT=9202` (scripts/opensearch-up.sh) or set OPENSEARCH_URL", o.url, code, err, body)
	}
	if json.Unmarshal(body, &root) != nil || root.Version.Distribution != "opensearch" {
		return fmt.Errorf("%s is not OpenSearch (GET / answered %.300s)", o.url, body)
	}
	if o.tmp, err = os.MkdirTemp("", "enricher-osd-"); err != nil {
		return err
	}
	o.cleanups = append(o.cleanups, func() { os.RemoveAll(o.tmp) })

	bin := filepath.Join(o.tmp, "enricher")
	if out, err := o.run(3*time.Minute, "go", "build", "-o", bin, "./cmd/enricher"); err != nil {
		return fmt.Errorf("go build ./cmd/enricher: %v\n%s", err, out)
	}

	id := fmt.Sprintf("osd%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	rename := map[string]string{
		sample.WazuhIndex:    "wazuh-alerts-" + id,
		sample.Wazuh5Index:   "wazuh-findings-v5-" + id,
		sample.SigmaIndex:    "sigma-alerts-" + id,
		sample.EndpointIndex: "logs-endpoint.alerts-" + id,
	}
	o.indices = []string{rename[sample.WazuhIndex], rename[sample.Wazuh5Index], rename[sample.SigmaIndex], rename[sample.EndpointIndex]}
	o.details = config.DefaultDetailsIndex + "-" + id
	o.state = ".enricher-state-" + id
	o.cleanups = append(o.cleanups, o.deleteIndices)
	settings := map[string]any{"number_of_shards": 1, "number_of_replicas": 0}
	for _, ix := range o.indices {
		body := map[string]any{"settings": settings}
		if ix == rename[sample.WazuhIndex] {
			body["mappings"] = wazuhMapping
		}
		b, _ := json.Marshal(body)
		if code, resp, err := o.do(http.MethodPut, "/"+ix, b); err != nil || code != http.StatusOK {
			return fmt.Errorf("create %s: status %d %v %.300s", ix, code, err, resp)
		}
	}

	var docs []sample.Doc
	for _, d := range sample.Generate(osSampleCount, 1) {
		if ix, ok := rename[d.Index]; ok {
			d.Index = ix
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		return fmt.Errorf("no sample alerts of the Wazuh, Sigma and Elastic Defend sources")
	}
	// One alert larger than daemon.max_alert_bytes: quarantined at once.
	big := sample.Doc{Index: rename[sample.SigmaIndex], ID: "oversized-alert", Source: map[string]any{}}
	for _, d := range docs {
		if d.Index == big.Index {
			for k, v := range d.Source {
				big.Source[k] = v
			}
			break
		}
	}
	big.Source["message"] = strings.Repeat("x", 2*maxAlertBytes)
	docs = append(docs, big)
	o.enriched = len(docs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := elastic.NewClient(config.Elasticsearch{URLs: []string{o.url}, RequestTimeout: 30 * time.Second}, nil)
	if err != nil {
		return err
	}
	if err := sample.Load(ctx, client, docs); err != nil {
		return fmt.Errorf("load sample alerts: %w", err)
	}

	sources, err := (&harness{root: o.root}).ruleSources()
	if err != nil {
		return err
	}
	cfg, _ := json.Marshal(map[string]any{ // JSON is YAML
		"elasticsearch": map[string]any{"urls": []string{o.url}},
		"rules":         map[string]any{"sources": sources},
		"alerts":        map[string]any{"indices": o.indices},
		"output":        map[string]any{"details_index": o.details},
		"daemon":        map[string]any{"max_alert_bytes": maxAlertBytes, "state_index": o.state},
	})
	cfgPath := filepath.Join(o.tmp, "enricher.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// The first run quarantines the oversized alert, which makes it exit 1 (README "run
	// --once") after enriching the others; the second finds nothing left and exits 0.
	want := fmt.Sprintf("enriched %d alerts (1 quarantined, 0 failed, 0 deferred, 0 waiting", len(docs)-1)
	out, err := o.run(3*time.Minute, bin, "run", "--once", "--config", cfgPath, "--listen", "127.0.0.1:"+port)
	if err == nil || !bytes.Contains(out, []byte(want)) || !bytes.Contains(out, []byte("enricher run: 1 alerts quarantined")) {
		return fmt.Errorf("enricher run --once on OpenSearch: %v, want exit 1 after %q and the quarantine named\n%s", err, want, out)
	}
	// The run does not refresh: without it, the second could still see the oversized alert
	// pending and quarantine it again.
	if err := o.refresh(); err != nil {
		return err
	}
	if out, err := o.run(time.Minute, bin, "run", "--once", "--config", cfgPath, "--listen", "127.0.0.1:"+port); err != nil {
		return fmt.Errorf("enricher run --once on OpenSearch, second run: %v\n%s", err, out)
	}
	return o.refresh()
}

func (o *osHarness) refresh() error {
	path := "/" + strings.Join(append(append([]string{}, o.indices...), o.details), ",") + "/_refresh"
	if code, resp, err := o.do(http.MethodPost, path, nil); err != nil || code != http.StatusOK {
		return fmt.Errorf("refresh (run --once publishes the mapping detail index %s): %d %v %.300s", o.details, code, err, resp)
	}
	return nil
}

func (o *osHarness) stop() {
	for i := len(o.cleanups) - 1; i >= 0; i-- {
		o.cleanups[i]()
	}
}

func (o *osHarness) deleteIndices() {
	if os.Getenv("DASHBOARDS_KEEP") == "1" {
		return
	}
	o.do(http.MethodDelete, "/"+strings.Join(o.indices, ",")+","+o.details+","+o.state+"?ignore_unavailable=true&expand_wildcards=open,hidden", nil)
}

func (o *osHarness) run(timeout time.Duration, name string, args ...string) ([]byte, error) {
	return (&harness{root: o.root}).run(timeout, nil, name, args...)
}

func (o *osHarness) do(method, path string, body []byte) (int, []byte, error) {
	return send(o.url, "", "", method, path, body)
}

// patternIndices returns the test indices an index pattern covers (coveredIndices).
func (o *osHarness) patternIndices(t *testing.T, dv DataView) []string {
	t.Helper()
	return coveredIndices(t, dv, o.indices, o.details)
}

func planOpenSearch(t *testing.T) (map[string]DataView, []FieldUse, []Query) {
	t.Helper()
	views, uses, queries, errs := PlanOpenSearch(loadOpenSearch(t))
	if len(errs) > 0 {
		t.Fatalf("saved objects: %v", errors.Join(errs...))
	}
	return views, uses, queries
}

// TestOpenSearchDashboardsFieldsInRealMapping checks that every field an OpenSearch
// Dashboards object uses (time field, saved-search columns, sort and KQL fields,
// visualization terms and date_histogram fields) is mapped in the test indices its index
// pattern covers on OpenSearch, with one type across them, fitting its use (keyword for
// terms, date for time fields and date histograms, doc values for sorts, indexed for
// queries), and that some document there has a value: the daemon wrote it on OpenSearch
// in its default shape, or the Wazuh alert carries it.
func TestOpenSearchDashboardsFieldsInRealMapping(t *testing.T) {
	o := osEnv(t)
	views, uses, _ := planOpenSearch(t)
	byView := usesByView(uses)
	ids := make([]string, 0, len(byView))
	for id := range byView {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			dv := views[id]
			checkFieldUses(t, o.do, dv, o.patternIndices(t, dv), byView[id])
		})
	}
}

// TestOpenSearchDashboardsQueriesReturnData runs every saved search and visualization as
// the request OpenSearch Dashboards sends for it: the KQL translated (match_phrase,
// match, exists, bool), within the last day on the index pattern's time field (the time
// picker; none on the detail index), the saved search's sort and columns, the
// visualization's buckets nested in agg order (terms by count, date_histogram "auto" as
// 30m), count = doc_count; on the test indices the index pattern matches. Each returns
// hits, a non-empty bucket at every level, and a value for every saved-search column.
func TestOpenSearchDashboardsQueriesReturnData(t *testing.T) {
	o := osEnv(t)
	views, _, queries := planOpenSearch(t)
	for _, q := range queries {
		t.Run(q.Object, func(t *testing.T) {
			dv := views[q.DataView]
			body := q.Body()
			if len(q.Buckets) == 0 {
				body["size"] = 100
			}
			if dv.TimeField != "" {
				body["query"] = map[string]any{"bool": map[string]any{"filter": []any{
					body["query"],
					map[string]any{"range": map[string]any{dv.TimeField: map[string]any{
						"gte": "now-1d", "lte": "now+1h", "format": "strict_date_optional_time"}}},
				}}}
			}
			n := checkQueryReturnsData(t, o.do, searchPath(dv, o.patternIndices(t, dv)), q, body)
			t.Logf("%d hits", n)
		})
	}
}

// TestOpenSearchDashboardsMappingDetailsLookup follows what the README tells the analyst
// to do without Kibana's links: each distinct attack_mappings.details value of the
// Wazuh T1021.002 alerts, as the query ref : "<value>" on the index pattern of the saved
// search "ATT&CK mapping details", returns that technique's mapping documents, every one
// with ref equal to the value.
func TestOpenSearchDashboardsMappingDetailsLookup(t *testing.T) {
	o := osEnv(t)
	views, _, queries := planOpenSearch(t)
	var details, t1021 *Query
	for i, q := range queries {
		switch {
		case views[q.DataView].Title == config.DefaultDetailsIndex && len(q.Buckets) == 0:
			details = &queries[i]
		case strings.HasPrefix(q.Object, "search/") && views[q.DataView].TimeField == "timestamp" &&
			len(q.KQL.Fields()) == 1 && q.KQL.Value == "T1021.002":
			t1021 = &queries[i]
		}
	}
	if details == nil || t1021 == nil {
		t.Fatalf("want a saved search over %s and one of the Wazuh T1021.002 alerts", config.DefaultDetailsIndex)
	}
	field := enrich.Under(enrich.DefaultRoot, enrich.FieldDetails)
	b, _ := json.Marshal(map[string]any{"size": 0, "query": t1021.KQL.ES(),
		"aggs": map[string]any{"v": map[string]any{"terms": map[string]any{"field": field, "size": 100}}}})
	var r struct {
		Aggregations struct {
			V struct {
				Buckets []struct {
					Key string `json:"key"`
				} `json:"buckets"`
			} `json:"v"`
		} `json:"aggregations"`
	}
	dv := views[t1021.DataView]
	search(t, o.do, searchPath(dv, o.patternIndices(t, dv)), b, &r)
	if len(r.Aggregations.V.Buckets) == 0 {
		t.Fatalf("no %s value on the Wazuh T1021.002 alerts", field)
	}
	detailsView := views[details.DataView]
	for _, bk := range r.Aggregations.V.Buckets {
		q, err := ParseKQL(fmt.Sprintf(`ref : "%s"`, bk.Key))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{"query": map[string]any{"bool": map[string]any{"filter": []any{details.KQL.ES(), q.ES()}}},
			"size": 1000, "_source": []string{"ref", "technique"}})
		var d struct {
			Hits struct {
				Hits []struct {
					Source struct {
						Ref, Technique string
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		search(t, o.do, searchPath(detailsView, o.patternIndices(t, detailsView)), body, &d)
		if len(d.Hits.Hits) == 0 {
			t.Errorf("ref : %q returns no mapping details", bk.Key)
		}
		technique, _, _ := strings.Cut(bk.Key, "@")
		for _, h := range d.Hits.Hits {
			if h.Source.Ref != bk.Key || h.Source.Technique != technique {
				t.Errorf("ref : %q returns a document of ref %q, technique %q", bk.Key, h.Source.Ref, h.Source.Technique)
			}
		}
		t.Logf("%s: %d mapping details", bk.Key, len(d.Hits.Hits))
	}
}
