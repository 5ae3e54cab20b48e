package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/plugin"
)

// startPlugins launches the configured plugins, in config order. A plugin that cannot
// start (missing binary, wrong checksum, failed handshake, rejected config) stops the
// daemon with an error naming it: running without a configured stage would silently
// skip it. The returned func kills every plugin process.
func startPlugins(ctx context.Context, ps []config.Plugin, reg prometheus.Registerer, log *slog.Logger) ([]enrich.PipelineStage, func(context.Context), error) {
	if len(ps) == 0 {
		return nil, func(context.Context) {}, nil
	}
	pm := metrics.NewPluginMetrics(reg)
	var hosts []*plugin.Host
	closeAll := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, h := range hosts {
			if err := h.Close(ctx); err != nil {
				log.Warn("plugin close failed", "plugin", h.Name(), "err", err)
			}
		}
	}
	var stages []enrich.PipelineStage
	for _, p := range ps {
		h, err := plugin.NewHost(ctx, p, log, pm)
		if err != nil {
			closeAll(ctx)
			return nil, nil, fmt.Errorf("start plugin %s: %w", p.Name, err)
		}
		hosts = append(hosts, h)
		pm.SetInfo(p.Name, p.Required)
		stages = append(stages, enrich.PipelineStage{Stage: h, Required: p.Required})
	}
	return stages, closeAll, nil
}
