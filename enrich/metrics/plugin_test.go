package metrics_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich/metrics"
)

func TestPluginMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewPluginMetrics(reg)
	m.Init("asset")
	m.Call("asset", metrics.PluginResultOK, 30*time.Millisecond)
	m.Call("asset", metrics.PluginResultCrash, time.Millisecond)
	m.Restart("asset")
	m.SetUp("asset", true)
	m.PatchRejected("asset", 3)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{} // name -> labels -> value
	for _, mf := range mfs {
		got[mf.GetName()] = map[string]float64{}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			got[mf.GetName()][strings.Join(labels, ",")] = v
		}
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{
		"enricher_plugin_call_duration_seconds", "enricher_plugin_calls_total",
		"enricher_plugin_patches_rejected_total", "enricher_plugin_restarts_total", "enricher_plugin_up",
	}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("metrics = %v, want %v", names, want)
	}
	for _, tc := range []struct {
		name, labels string
		want         float64
	}{
		{"enricher_plugin_calls_total", "plugin=asset,result=ok", 1},
		{"enricher_plugin_calls_total", "plugin=asset,result=crash", 1},
		{"enricher_plugin_calls_total", "plugin=asset,result=timeout", 0}, // pre-created by Init
		{"enricher_plugin_call_duration_seconds", "plugin=asset", 2},
		{"enricher_plugin_restarts_total", "plugin=asset", 1},
		{"enricher_plugin_up", "plugin=asset", 1},
		{"enricher_plugin_patches_rejected_total", "plugin=asset", 3},
	} {
		v, ok := got[tc.name][tc.labels]
		if !ok || v != tc.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	if n := len(got["enricher_plugin_calls_total"]); n != len(metrics.PluginResults) {
		t.Errorf("%d call series, want one per result (%d)", n, len(metrics.PluginResults))
	}
}

func TestPluginMetricsNilRegisterer(t *testing.T) {
	m := metrics.NewPluginMetrics(nil)
	m.Call("x", metrics.PluginResultOK, time.Second) // must not panic
}
