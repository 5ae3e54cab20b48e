package dashboards

// Checks that need no server: the files parse, references resolve, every query is in the
// translatable subset, and every metric a dashboard or rule names is one the daemon
// defines. The checks against real servers are in dashboards_test.go (tag integration).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/enrich/metrics"
)

// loadKibana parses every kibana/*.ndjson file this package owns.
func loadKibana(t testing.TB) []SavedObject {
	t.Helper()
	files, _ := filepath.Glob("kibana/*.ndjson")
	var all []SavedObject
	for _, f := range files {
		if filepath.Base(f) == "coverage.ndjson" { // owned and tested by the coverage package
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := ParseNDJSON(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, objs...)
	}
	if len(all) == 0 {
		t.Fatal("no saved objects in kibana/*.ndjson")
	}
	return all
}

// GrafanaTarget is one PromQL query of a Grafana dashboard.
type GrafanaTarget struct {
	Panel, Expr string
}

// loadGrafana returns every PromQL expression in grafana/*.json: panel targets and the
// metric selectors of label_values() variable queries.
func loadGrafana(t testing.TB) []GrafanaTarget {
	t.Helper()
	files, _ := filepath.Glob("grafana/*.json")
	if len(files) == 0 {
		t.Fatal("no grafana/*.json")
	}
	var out []GrafanaTarget
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID        string `json:"uid"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Type       string `json:"type"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				ID      int    `json:"id"`
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
				Datasource map[string]any `json:"datasource"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" {
			t.Errorf("%s: no uid", f)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", f, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no targets", f, p.Title)
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("%s: panel %q must use the ${datasource} variable", f, p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q has an empty expression", f, p.Title)
				}
				out = append(out, GrafanaTarget{Panel: p.Title, Expr: tg.Expr})
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			def := strings.TrimSpace(v.Definition)
			if !strings.HasPrefix(def, "label_values(") || !strings.HasSuffix(def, ")") {
				t.Errorf("%s: variable %s: want label_values(selector, label), got %q", f, v.Name, def)
				continue
			}
			inner := def[len("label_values(") : len(def)-1]
			sel := inner[:strings.LastIndex(inner, ",")]
			out = append(out, GrafanaTarget{Panel: "variable " + v.Name, Expr: sel})
		}
	}
	return out
}

// Rule is one alerting rule.
type Rule struct {
	File, Alert, Expr string
}

func loadRules(t testing.TB) []Rule {
	t.Helper()
	files, _ := filepath.Glob("prometheus/*.yml")
	var out []Rule
	for _, f := range files {
		if strings.HasSuffix(f, ".test.yml") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out = append(out, Rule{File: f, Alert: r.Alert, Expr: r.Expr})
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no alert rules in prometheus/*.yml")
	}
	return out
}

// definedMetrics returns the sample names the daemon's metrics package exposes
// (histograms as _bucket, _sum, _count), plus up.
func definedMetrics(t testing.TB) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.SetRuleset("v", "hash", 1)
	m.StageCall("attack", "ok", 0)
	m.PatchRejected("attack")
	m.ESRequests.WithLabelValues("search", "2xx").Inc()
	m.ESDuration.WithLabelValues("search").Observe(0)
	m.ReplicaInfo.WithLabelValues("r").Set(1)
	m.Heartbeats.WithLabelValues("ok")
	pm := metrics.NewPluginMetrics(reg)
	pm.Init("p")
	pm.SetInfo("p", true)
	pm.Call("p", metrics.PluginResultOK, 0)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{"up": true}
	for _, mf := range mfs {
		n := mf.GetName()
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[n+s] = true
			}
			continue
		}
		out[n] = true
	}
	return out
}

func TestKibanaSavedObjectsStructure(t *testing.T) {
	objs := loadKibana(t)
	views, uses, queries, errs := Plan(objs)
	for _, err := range errs {
		t.Error(err)
	}
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Type]++
	}
	for typ, min := range map[string]int{"index-pattern": 1, "search": 1, "lens": 5, "dashboard": 1} {
		if counts[typ] < min {
			t.Errorf("want at least %d %s objects, got %d", min, typ, counts[typ])
		}
	}
	if len(views) == 0 || len(uses) == 0 || len(queries) == 0 {
		t.Fatalf("nothing to check: %d data views, %d field uses, %d queries", len(views), len(uses), len(queries))
	}
	for _, q := range queries {
		if _, ok := views[q.DataView]; !ok {
			t.Errorf("%s: data view %q not in the files", q.Object, q.DataView)
		}
	}
}

func TestGrafanaAndRulesUseDefinedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	check := func(where, expr string) {
		names := MetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !defined[n] {
				t.Errorf("%s: metric %s is not defined by enrich/metrics", where, n)
			}
		}
	}
	for _, tg := range loadGrafana(t) {
		if _, err := SubstituteVars(tg.Expr, GrafanaVars("enricher")); err != nil {
			t.Errorf("panel %q: %v", tg.Panel, err)
		}
		check("grafana panel "+tg.Panel, tg.Expr)
	}
	for _, r := range loadRules(t) {
		check("rule "+r.Alert, r.Expr)
		for _, in := range InnerExprs(r.Expr) {
			if strings.ContainsAny(in, "<>") || strings.Contains(in, "==") {
				t.Errorf("rule %s: inner expression %q still has a comparison", r.Alert, in)
			}
		}
	}
}

func TestParseKQL(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want string
	}{
		{``, `{"match_all":{}}`},
		{`a : "x y"`, `{"match_phrase":{"a":"x y"}}`},
		{`a : false`, `{"match":{"a":"false"}}`},
		{`not a : *`, `{"bool":{"must_not":[{"exists":{"field":"a"}}]}}`},
		{`a : * and not (b : "1" or c : 2)`,
			`{"bool":{"filter":[{"exists":{"field":"a"}},{"bool":{"must_not":[{"bool":{"minimum_should_match":1,"should":[{"match_phrase":{"b":"1"}},{"match":{"c":"2"}}]}}]}}]}}`},
	} {
		n, err := ParseKQL(tc.q)
		if err != nil {
			t.Errorf("%q: %v", tc.q, err)
			continue
		}
		got, _ := json.Marshal(n.ES())
		if string(got) != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{`a : x*`, `a > 3`, `a : "x`, `a :`, `a : 1 and`, `(a : 1`} {
		if _, err := ParseKQL(q); err == nil {
			t.Errorf("%q: want an error", q)
		}
	}
}

func TestInnerExprs(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="enricher"} == 0`: {`up{job="enricher"}`},
		`enricher_lag_seconds > 600 and deriv(enricher_lag_seconds[15m]) > 0`: {
			`enricher_lag_seconds`, `deriv(enricher_lag_seconds[15m])`},
		"sum by (job) (rate(a{x=~\"a|b\"}[10m]))\n  / sum by (job) (rate(a[10m]))\n> 0.05": {
			"sum by (job) (rate(a{x=~\"a|b\"}[10m]))\n  / sum by (job) (rate(a[10m]))"},
		`time() - b > 900`:                   {`time() - b`},
		`x{l="a and b > 1"} >= bool 1`:       {`x{l="a and b > 1"}`},
		`max(x) by (instance) != 1 unless y`: {`max(x) by (instance)`, `y`},
	} {
		if got := InnerExprs(expr); !reflect.DeepEqual(got, want) {
			t.Errorf("InnerExprs(%q) = %q, want %q", expr, got, want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	got := MetricNames(`sum by (result) (rate(enricher_poll_runs_total{result="up",x="enricher_fake"}[1m])) / up`)
	sort.Strings(got)
	if want := []string{"enricher_poll_runs_total", "up"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
