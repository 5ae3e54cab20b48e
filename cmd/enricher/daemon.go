package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/rules"
)

// newLogger returns a slog logger writing to w in the given format and level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// loadConfig loads the config file and applies flag overrides; errors are usage errors.
func loadConfig(path, rulesDir string) (config.Config, error) {
	var flags []config.Flag
	if rulesDir != "" {
		flags = append(flags, config.Flag{Name: "--rules", Field: "rules.dir", Set: func(c *config.Config) { c.Rules.Dir = rulesDir }})
	}
	cfg, err := config.LoadWith(path, flags)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// loadRules builds the ruleset the config asks for: built-in content when neither a
// folder nor sources are configured.
func loadRules(ctx context.Context, cfg config.Config) (*rules.Ruleset, error) {
	rs, err := rules.Load(ctx, rules.LoadConfig{
		Dir:             cfg.Rules.Dir,
		Sources:         cfg.Rules.Sources,
		KeepAllReleases: cfg.Rules.KeepAllReleases,
	})
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return rs, nil
}

// pipelineParts is what buildPipeline returns.
type pipelineParts struct {
	pipeline *enrich.Pipeline
	attack   *enrich.AttackStage
	plugins  []enrich.PipelineStage
	// mappings of plugin namespaces to put on alert indices
	extraMappings map[string]map[string]any
	close         func(context.Context)
}

// buildPipeline starts the configured plugins and assembles the pipeline: the ATT&CK
// stage, then the plugins in config order.
func buildPipeline(ctx context.Context, cfg config.Config, rs *rules.Ruleset, m *metrics.Metrics,
	reg prometheus.Registerer, log *slog.Logger) (*pipelineParts, error) {
	plugins, closePlugins, err := startPlugins(ctx, cfg.Plugins, reg, log)
	if err != nil {
		return nil, err
	}
	parts := &pipelineParts{plugins: plugins, close: closePlugins, extraMappings: map[string]map[string]any{}}
	for _, p := range plugins {
		parts.extraMappings[p.Stage.Namespace()] = elastic.PluginNamespaceMapping()
	}
	if err := parts.rebuild(cfg, rs, m, log); err != nil {
		closePlugins(ctx)
		return nil, err
	}
	return parts, nil
}

// rebuild makes a new ATT&CK stage for rs and a new pipeline around the running plugins.
func (parts *pipelineParts) rebuild(cfg config.Config, rs *rules.Ruleset, m *metrics.Metrics, log *slog.Logger) error {
	attack := enrich.NewAttackStage(rs, enrich.AttackOptions{
		Fields:        cfg.Alerts.Fields,
		Root:          cfg.Output.Root,
		InheritParent: *cfg.Rules.InheritParent,
		Detail:        cfg.Output.Detail,
	})
	stages := append([]enrich.PipelineStage{{Stage: attack, Required: true}}, parts.plugins...)
	var obs enrich.Observer
	if m != nil {
		obs = m
	}
	p, err := enrich.NewPipeline(stages, cfg.Output.Root, obs, log)
	if err != nil {
		return fmt.Errorf("build pipeline: %w", err)
	}
	parts.pipeline, parts.attack = p, attack
	return nil
}

// server serves /metrics, /healthz and /readyz on its own mux.
type server struct {
	srv *http.Server
	ln  net.Listener
}

// startServer serves /metrics from reg, /healthz (the process is up) and /readyz
// (ready() says whether the daemon works, with a detail text: the store's state and the
// indices left out).
func startServer(addr string, reg *prometheus.Registry, ready func() (bool, string), log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &server{ln: ln}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, detail := ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, detail)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "enricher: see /metrics, /healthz, /readyz\n")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return s, nil
}

func (s *server) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// newRegistry returns a registry with the Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func hostname() string {
	h, _ := os.Hostname()
	return strings.TrimSpace(h)
}
