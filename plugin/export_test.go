package plugin

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// NewInProcessHost is a Host whose "process" is impl served over go-plugin's in-memory
// gRPC test connection (TestPluginGRPCConn): the same adapters and converters as a real
// plugin, without exec. Each (re)start opens a new connection; Launches counts them.
func NewInProcessHost(ctx context.Context, t testing.TB, cfg config.Plugin, impl Enricher, log *slog.Logger, m *metrics.PluginMetrics) (*Host, *atomic.Int64, error) {
	h := newHost(cfg, log, m)
	h.backoffBase = 10 * time.Millisecond
	launches := new(atomic.Int64)
	h.launch = func(context.Context) (*proc, error) {
		launches.Add(1)
		client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{pluginKey: &grpcPlugin{impl: impl}})
		raw, err := client.Dispense(pluginKey)
		if err != nil {
			return nil, err
		}
		var stopped atomic.Bool
		var once sync.Once
		return &proc{
			rpc:    raw.(Enricher),
			exited: stopped.Load,
			stop: func(_ context.Context, hard bool) {
				once.Do(func() {
					stopped.Store(true)
					if hard { // like a killed process: the server vanishes
						server.Stop()
						_ = client.Conn.Close()
						return
					}
					_ = client.Close() // asks the server to stop, as go-plugin's Kill does
				})
			},
		}, nil
	}
	return h, launches, h.Open(ctx)
}

// SetBackoff shortens the restart backoff in tests.
func (h *Host) SetBackoff(base, max time.Duration) {
	h.mu.Lock()
	h.backoffBase, h.backoffMax = base, max
	h.mu.Unlock()
}

// KillProcess stops the current process abruptly, as a crash would.
func (h *Host) KillProcess() {
	h.mu.Lock()
	p := h.cur
	h.mu.Unlock()
	if p != nil {
		p.stop(context.Background(), true)
	}
}
