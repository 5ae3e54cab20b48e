//go:build integration

package coverage

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
)

// esClient is the daemon's client (enrich/elastic), as `enricher coverage` uses it.
func esClient(t *testing.T) *elastic.Client {
	t.Helper()
	u := os.Getenv("ELASTICSEARCH_URL")
	if u == "" {
		u = "http://127.0.0.1:9200"
	}
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{u}, Username: os.Getenv("ELASTICSEARCH_USERNAME"),
		Password: os.Getenv("ELASTICSEARCH_PASSWORD"), APIKey: os.Getenv("ELASTICSEARCH_API_KEY"), RequestTimeout: 30 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("store at %s: %v %s (start one with `make es-up`)", u, err, body)
	}
	return c
}

func do(t *testing.T, c *elastic.Client, method, path, body string) map[string]any {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	code, resp, err := c.Do(context.Background(), "other", method, path, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	_ = json.Unmarshal(resp, &out)
	if code >= 300 {
		t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

// TestIntegrationAlertCountsAndIndex counts alerts in a hidden, dynamic:false index shaped
// like Kibana's alerts index, then writes the coverage documents and reads them back.
func TestIntegrationAlertCountsAndIndex(t *testing.T) {
	es := esClient(t)
	ctx := context.Background()
	suffix := fmt.Sprintf("%d-%d", time.Now().UnixNano(), rand.IntN(1e6))
	alerts := ".alerts-security.alerts-enricher-coverage-test-" + suffix
	covIndex := "enricher-coverage-test-" + suffix
	wazuh := "wazuh-alerts-4.x-enricher-coverage-test-" + suffix
	t.Cleanup(func() {
		for _, idx := range []string{alerts, covIndex, wazuh} {
			es.Do(context.Background(), "other", http.MethodDelete, "/"+idx+"?expand_wildcards=open,hidden", nil, nil)
		}
	})
	do(t, es, "PUT", "/"+alerts, `{
	  "settings": {"index.hidden": true, "number_of_replicas": 0},
	  "mappings": {"dynamic": false, "properties": {
	    "@timestamp": {"type": "date"},
	    "kibana.alert.rule.threat.technique.id": {"type": "keyword"},
	    "kibana.alert.rule.threat.technique.subtechnique.id": {"type": "keyword"},
	    "threat.technique.id": {"type": "keyword"},
	    "threat.technique.subtechnique.id": {"type": "keyword"}}}}`)
	now := time.Now().UTC()
	old := now.Add(-40 * 24 * time.Hour)
	docs := []string{
		// One alert carrying T1021/T1021.002 in both the rule mapping and ECS threat.*: counts once.
		fmt.Sprintf(`{"@timestamp":%q,"kibana.alert.rule.threat":[{"technique":[{"id":"T1021","subtechnique":[{"id":"T1021.002"}]}]}],"threat":{"technique":{"id":["T1021"],"subtechnique":{"id":["T1021.002"]}}}}`, now.Format(time.RFC3339)),
		// An Elastic Defend style alert: only ECS threat.*.
		fmt.Sprintf(`{"@timestamp":%q,"threat":{"technique":{"id":["T1021"],"subtechnique":{"id":["T1021.002"]}}}}`, now.Format(time.RFC3339)),
		fmt.Sprintf(`{"@timestamp":%q,"kibana.alert.rule.threat":[{"technique":[{"id":"T1570"}]}]}`, now.Format(time.RFC3339)),
		// Out of range.
		fmt.Sprintf(`{"@timestamp":%q,"kibana.alert.rule.threat":[{"technique":[{"id":"T1059"}]}]}`, old.Format(time.RFC3339)),
	}
	var bulk strings.Builder
	for _, d := range docs {
		bulk.WriteString(`{"index":{}}` + "\n" + d + "\n")
	}
	do(t, es, "POST", "/"+alerts+"/_bulk?refresh=true", bulk.String())

	// A Wazuh 4.x index (dynamic mapping: strings as text with a keyword subfield) and
	// Sigma-tagged alerts: counted by the daemon's fields, rule.mitre.id and tags.
	bulk.Reset()
	for _, d := range []string{
		fmt.Sprintf(`{"@timestamp":%q,"rule":{"id":"92652","mitre":{"id":["T1021.002"],"tactic":["Lateral Movement"]}}}`, now.Format(time.RFC3339)),
		fmt.Sprintf(`{"@timestamp":%q,"tags":["attack.lateral_movement","attack.t1021.002","attack.T1570"]}`, now.Format(time.RFC3339)),
		fmt.Sprintf(`{"@timestamp":%q,"rule":{"mitre":{"id":["T1570"]}},"tags":["attack.t1570"]}`, now.Format(time.RFC3339)),
	} {
		bulk.WriteString(`{"index":{}}` + "\n" + d + "\n")
	}
	do(t, es, "POST", "/"+wazuh+"/_bulk?refresh=true", bulk.String())
	var fields []AlertField
	for _, f := range enrich.DefaultFields {
		kind := f.Kind
		af := AlertField{Path: f.Path, Technique: func(v string) (string, bool) { return enrich.ReadTechnique(v, kind) }}
		if kind == enrich.FieldTag {
			af.Include = TechniqueTags
		}
		fields = append(fields, af)
	}
	counts, skipped, err := AlertCounts(ctx, es, AlertQuery{Index: ".alerts-security.alerts-enricher-coverage-test-" + suffix + "*," + wazuh,
		Since: "now-30d", Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 0 {
		t.Errorf("fields not counted: %v", skipped)
	}
	want := map[string]int64{"T1021": 2, "T1021.002": 4, "T1570": 3}
	if len(counts) != len(want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}

	rep := Build(scan(t, "testdata/rules"), BuildOptions{Ruleset: builtin(t), Alerts: counts, AlertsSince: "now-30d", RunID: "it-" + suffix, Now: now})
	for _, run := range []string{"first", "again (idempotent)"} {
		n, err := WriteIndex(ctx, es, rep, WriteOptions{Index: covIndex, Refresh: "true"})
		if err != nil {
			t.Fatalf("%s write: %v", run, err)
		}
		if n != len(rep.Techniques) {
			t.Errorf("%s write: %d documents, want %d", run, n, len(rep.Techniques))
		}
	}
	out := do(t, es, "GET", "/"+covIndex+"/_search", `{"size":0,"track_total_hits":true,"query":{"term":{"technique.id":"T1021.002"}},
	  "aggs":{"gaps":{"terms":{"field":"gaps"}},"rules":{"max":{"field":"rule.count"}},"alerts":{"max":{"field":"alert.count"}}}}`)
	hits := out["hits"].(map[string]any)["total"].(map[string]any)["value"].(float64)
	aggs := out["aggregations"].(map[string]any)
	if hits != 1 || aggs["rules"].(map[string]any)["value"].(float64) != 4 || aggs["alerts"].(map[string]any)["value"].(float64) != 4 {
		t.Errorf("T1021.002 document: hits %v, aggs %v", hits, aggs)
	}
	all := do(t, es, "GET", "/"+covIndex+"/_count", `{"query":{"term":{"run.id":"it-`+suffix+`"}}}`)
	if all["count"].(float64) != float64(len(rep.Techniques)) {
		t.Errorf("count = %v, want %d", all["count"], len(rep.Techniques))
	}
	m := do(t, es, "GET", "/"+covIndex+"/_mapping/field/technique.id", "")
	if !strings.Contains(fmt.Sprint(m), "type:keyword") {
		t.Errorf("technique.id mapping: %v", m)
	}
}
