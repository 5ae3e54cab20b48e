package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
)

// startPlugins launches the configured plugins, in config order.
func startPlugins(_ context.Context, ps []config.Plugin, _ prometheus.Registerer, _ *slog.Logger) ([]enrich.PipelineStage, func(context.Context), error) {
	if len(ps) > 0 {
		return nil, nil, errors.New("plugins: not wired yet")
	}
	return nil, func(context.Context) {}, nil
}
