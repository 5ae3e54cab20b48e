package plugin_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin/examples/assetinventory"
)

// benchAlerts makes n alerts shaped like Elastic Security alerts (the fields the
// pipeline would fetch), a third of them matching the inventory.
func benchAlerts(n int) []*enrich.Alert {
	hosts := []string{"WS-0142.corp.example.com", "web01.corp.example.com", "laptop-99"}
	out := make([]*enrich.Alert, n)
	for i := range out {
		out[i] = &enrich.Alert{
			ID: fmt.Sprintf("alert-%06d", i), Index: ".internal.alerts-security.alerts-default-000001",
			SeqNo: int64(i), PrimaryTerm: 1,
			Source: map[string]any{
				"@timestamp": "2026-08-01T12:00:00.000Z",
				"host":       map[string]any{"name": hosts[i%len(hosts)], "os": map[string]any{"family": "windows"}},
				"user":       map[string]any{"name": "alice"},
				"kibana.alert.rule.threat": []any{map[string]any{
					"framework": "MITRE ATT&CK",
					"technique": []any{map[string]any{"id": "T1021", "subtechnique": []any{map[string]any{"id": "T1021.002"}}}},
				}},
				"kibana.alert.rule.name": "Lateral movement via SMB",
				"kibana.alert.uuid":      fmt.Sprintf("uuid-%06d", i),
			},
		}
	}
	return out
}

// BenchmarkEnrich compares one out-of-process plugin (the example binary, a real
// subprocess over gRPC with mTLS) with the same enrichment called in-process, per alert.
// Batching amortises the round trip: compare the ns/alert columns.
func BenchmarkEnrich(b *testing.B) {
	cfg := pluginConfig(nil)
	direct := assetinventory.New(nil)
	if err := direct.Configure(context.Background(), cfg.Config); err != nil {
		b.Fatal(err)
	}
	host, _, _ := startHost(b, cfg)

	for _, size := range []int{1, 100, 500} {
		alerts := benchAlerts(size)
		for _, path := range []struct {
			name string
			fn   func(context.Context, []*enrich.Alert) ([]enrich.Patch, error)
		}{
			{"in-process", direct.Enrich},
			{"subprocess", host.Enrich},
		} {
			b.Run(fmt.Sprintf("%s/batch=%d", path.name, size), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := path.fn(ctx, alerts); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/alert")
			})
		}
	}
}
