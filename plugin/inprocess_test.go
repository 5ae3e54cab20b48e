package plugin_test

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/plugin"
	"github.com/enricher-dev/enricher/plugin/examples/assetinventory"
)

// flaky wraps the example plugin; on the calls listed it misbehaves in-process.
type flaky struct {
	*assetinventory.Plugin
	host  atomic.Pointer[plugin.Host]
	calls atomic.Int64
	crash map[int64]bool // the connection dies mid-call
	hang  map[int64]bool // the call blocks until cancelled
}

func (f *flaky) Enrich(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
	n := f.calls.Add(1)
	switch {
	case f.crash[n]:
		go f.host.Load().KillProcess()
		<-ctx.Done()
		return nil, ctx.Err()
	case f.hang[n]:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.Plugin.Enrich(ctx, alerts)
}

// TestInProcessFailures runs the host's crash and hang handling against the example
// plugin served in-process (go-plugin's TestPluginGRPCConn), without exec.
func TestInProcessFailures(t *testing.T) {
	for _, tc := range []struct {
		name         string
		crash, hang  map[int64]bool
		callerWait   time.Duration // caller's own deadline, shorter than the plugin timeout
		wantErr      error
		wantNotDown  bool // the error must not say the plugin is unavailable
		wantLaunches int64
		wantResult   string
	}{
		{name: "crash then retry succeeds", crash: map[int64]bool{1: true}, wantLaunches: 2, wantResult: metrics.PluginResultCrash},
		{name: "crash on every send", crash: map[int64]bool{1: true, 2: true, 3: true}, wantErr: enrich.ErrStageUnavailable, wantLaunches: 3, wantResult: metrics.PluginResultCrash},
		{name: "hang times out and restarts", hang: map[int64]bool{1: true}, wantErr: context.DeadlineExceeded, wantLaunches: 2, wantResult: metrics.PluginResultTimeout},
		{name: "caller gives up first: no kill", hang: map[int64]bool{1: true}, callerWait: 50 * time.Millisecond,
			wantErr: context.DeadlineExceeded, wantNotDown: true, wantLaunches: 1, wantResult: metrics.PluginResultCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pluginConfig(nil)
			cfg.Timeout = 300 * time.Millisecond
			f := &flaky{Plugin: assetinventory.New(nil), crash: tc.crash, hang: tc.hang}
			log, _ := newLogger(t)
			m := metrics.NewPluginMetrics(prometheus.NewRegistry())
			h, launches, err := plugin.NewInProcessHost(t.Context(), t, cfg, f, log, m)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			f.host.Store(h)

			ctx := t.Context()
			if tc.callerWait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.callerWait)
				defer cancel()
			}
			got, err := h.Enrich(ctx, testAlerts())
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || errors.Is(err, enrich.ErrStageUnavailable) == tc.wantNotDown {
					t.Fatalf("err = %v, want %v (unavailable: %v)", err, tc.wantErr, !tc.wantNotDown)
				}
			} else if err != nil || !reflect.DeepEqual(got, wantPatches()) {
				t.Fatalf("Enrich = %v, %v", got, err)
			}
			if n := launches.Load(); n != tc.wantLaunches {
				t.Errorf("launches = %d, want %d", n, tc.wantLaunches)
			}
			if value(t, m.Calls.WithLabelValues("asset", tc.wantResult)) < 1 {
				t.Errorf("no %s call counted", tc.wantResult)
			}
			if r := value(t, m.Restarts.WithLabelValues("asset")); r != float64(tc.wantLaunches-1) {
				t.Errorf("restarts = %v, want %d", r, tc.wantLaunches-1)
			}
		})
	}
}
