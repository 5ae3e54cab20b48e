package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"

	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

func runCommand() command {
	return command{summary: "enrich alerts in Elasticsearch (daemon; --once to drain and exit)", run: runDaemon}
}

func runDaemon(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("run", e)
	cfgPath := fs.String("config", "", "config file (YAML); default: built-in defaults and environment")
	once := fs.Bool("once", false, "enrich until nothing is pending, then exit")
	rulesDir := fs.String("rules", "", "rules folder (overrides rules.dir)")
	listen := fs.String("listen", "", "address of /metrics, /healthz, /readyz (overrides daemon.listen; empty string in config disables nothing)")
	check := fs.Bool("config.check", false, "validate the config and the rules, then exit")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	log, err := newLogger(e.stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, *rulesDir)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Daemon.Listen = *listen
	}
	rs, err := loadRules(ctx, cfg)
	if err != nil {
		return usageError{err}
	}
	if *check {
		fmt.Fprintf(e.stdout, "config ok; ruleset %s (%s): %d mappings for %d techniques\n",
			rs.Version(), rs.Hash()[:12], rs.Len(), len(rs.Techniques()))
		return nil
	}

	reg := newRegistry()
	m := metrics.New(reg)
	m.SetRuleset(rs.Version(), rs.Hash(), rs.Len())
	parts, err := buildPipeline(ctx, cfg, rs, m, reg, log)
	if err != nil {
		return err
	}
	defer parts.close(context.WithoutCancel(ctx))

	srv, err := startServer(cfg.Daemon.Listen, reg, log)
	if err != nil {
		return usageError{err}
	}
	defer srv.shutdown(ctx)

	client, err := elastic.NewClient(cfg.Elasticsearch, m)
	if err != nil {
		return usageError{err}
	}
	en := elastic.NewEnricher(client, parts.pipeline, parts.attack, elastic.Options{
		Indices:         cfg.Alerts.Indices,
		Extra:           cfg.Alerts.Query,
		BatchSize:       cfg.Daemon.BatchSize,
		MaxRetries:      cfg.Daemon.MaxRetries,
		BackoffInitial:  cfg.Daemon.BackoffInitial,
		BackoffMax:      cfg.Daemon.BackoffMax,
		PollInterval:    cfg.Daemon.PollInterval,
		ShutdownTimeout: cfg.Daemon.ShutdownTimeout,
		InstallMappings: *cfg.Output.InstallMappings,
		ExtraMappings:   parts.extraMappings,
	}, m, log)
	en.OnPass = func() { srv.ready.Store(true) }
	log.Info("starting", "version", version, "host", hostname(), "elasticsearch", cfg.Elasticsearch.URLs,
		"indices", cfg.Alerts.Indices, "ruleset", rs.Version(), "ruleset_hash", rs.Hash()[:12],
		"mappings", rs.Len(), "once", *once)
	if *once {
		start := time.Now()
		res, err := en.RunOnce(ctx)
		log.Info("done", "written", res.Written, "failed", res.Failed, "deferred", res.Deferred,
			"partial", res.Partial, "batches", res.Batches, "took", time.Since(start).Round(time.Millisecond).String())
		fmt.Fprintf(e.stdout, "enriched %d alerts (%d failed, %d deferred, %d waiting for an optional stage) in %s\n",
			res.Written, res.Failed, res.Deferred, res.Partial, time.Since(start).Round(time.Millisecond))
		return err
	}
	go reloadOnHUP(ctx, cfg, parts, en, m, log)
	err = en.Run(ctx)
	log.Info("stopped")
	return err
}

// reloadOnHUP reloads the rules on SIGHUP. A failed load keeps the rules in use, logs the
// error and sets enricher_ruleset_last_load_successful to 0; a new ruleset hash makes
// enriched alerts pending again.
func reloadOnHUP(ctx context.Context, cfg config.Config, parts *pipelineParts, en *elastic.Enricher, m *metrics.Metrics, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		rs, err := loadRules(ctx, cfg)
		if err == nil {
			err = parts.rebuild(cfg, rs, m, log)
		}
		if err != nil {
			m.RulesetLoaded.Set(0)
			log.Error("rules reload failed; keeping the rules in use", "err", err)
			continue
		}
		m.SetRuleset(rs.Version(), rs.Hash(), rs.Len())
		en.SetPipeline(parts.pipeline, parts.attack)
		log.Info("rules reloaded", "ruleset", rs.Version(), "ruleset_hash", rs.Hash()[:12], "mappings", rs.Len())
	}
}
