package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
)

func runCommand() command {
	return command{summary: "enrich alerts in Elasticsearch (daemon; --once to drain and exit)", run: runDaemon}
}

func runDaemon(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("run", e)
	cfgPath := fs.String("config", "", "config file (YAML); default: built-in defaults and environment")
	once := fs.Bool("once", false, "enrich everything pending (history included, no rate limit), then exit")
	rulesDir := fs.String("rules", "", "rules folder (overrides rules.dir)")
	listen := fs.String("listen", "", "address of /metrics, /healthz, /readyz (overrides daemon.listen)")
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
		fmt.Fprintf(e.stdout, "fields enricher adds to each alert index mapping: %d (%d under %s, 1 per plugin namespace); "+
			"Kibana's alert indices allow %d in all\n",
			elastic.FieldsAdded(len(cfg.Plugins)), elastic.FieldsAdded(0), cfg.Output.Root, kibanaFieldLimit)
		fmt.Fprintf(e.stdout, "output: %s shape under %s; mapping details in index %s\n",
			cfg.Output.Detail, cfg.Output.Root, cfg.Output.DetailsIndex)
		return nil
	}

	if cfg.Daemon.Instance == "" {
		cfg.Daemon.Instance = fmt.Sprintf("%s-%d", hostname(), os.Getpid())
	}
	log = log.With("instance", cfg.Daemon.Instance)
	reg := newRegistry()
	m := metrics.New(reg)
	m.SetRuleset(rs.Version(), rs.Hash(), rs.Len())
	parts, err := buildPipeline(ctx, cfg, rs, m, reg, log)
	if err != nil {
		return err
	}
	defer parts.close(context.WithoutCancel(ctx))

	client, err := elastic.NewClient(cfg.Elasticsearch, m)
	if err != nil {
		return usageError{err}
	}
	store, state := newStore(client, cfg, parts, log)
	r := runner.New(store, state, parts.pipeline, runnerOptions(cfg), m, log)
	r.SetDetails(elastic.NewDetails(client, cfg.Output.DetailsIndex, state, log))

	srv, err := startServer(cfg.Daemon.Listen, reg, r.Ready, log)
	if err != nil {
		return usageError{err}
	}
	defer srv.shutdown(ctx)

	log.Info("starting", "version", version, "host", hostname(), "elasticsearch", cfg.Elasticsearch.URLs,
		"indices", cfg.Alerts.Indices, "ruleset", rs.Version(), "fingerprint", parts.pipeline.Generation().Hash[:12],
		"mappings", rs.Len(), "once", *once)
	if *once {
		start := time.Now()
		sum, err := r.RunOnce(ctx)
		took := time.Since(start).Round(time.Millisecond)
		log.Info("done", "written", sum.Written, "quarantined", sum.Quarantined, "failed", sum.Failed,
			"deferred", sum.Deferred, "took", took.String())
		fmt.Fprintf(e.stdout, "enriched %d alerts (%d quarantined, %d failed, %d deferred, %d waiting for an optional stage) in %s\n",
			sum.Written, sum.Quarantined, sum.Failed, sum.Deferred, sum.Waiting, took)
		return err
	}
	go reloadOnHUP(ctx, cfg, parts, r, m, log)
	err = r.Run(ctx)
	log.Info("stopped")
	return err
}

// kibanaFieldLimit is index.mapping.total_fields.limit as Kibana resets it on its alert
// indices at every start.
const kibanaFieldLimit = 2500

// newStore returns the alert store and the state store the config asks for.
func newStore(client *elastic.Client, cfg config.Config, parts *pipelineParts, log *slog.Logger) (*elastic.Store, *elastic.State) {
	store := elastic.NewStore(client, elastic.StoreOptions{
		Indices:         cfg.Alerts.Indices,
		TimeField:       cfg.Alerts.TimeField,
		Query:           cfg.Alerts.Query,
		Root:            cfg.Output.Root,
		Namespaces:      parts.extraMappings,
		InstallMappings: *cfg.Output.InstallMappings,
		MaxRequestBytes: cfg.Daemon.BulkMaxBytes,
		MaxRequestItems: cfg.Daemon.BatchSize,
	}, log)
	return store, elastic.NewState(client, cfg.Daemon.StateIndex, cfg.Alerts.Indices, version)
}

// runnerOptions are the run loop's settings from the config.
func runnerOptions(cfg config.Config) runner.Options {
	d := cfg.Daemon
	return runner.Options{
		BatchSize:       d.BatchSize,
		MaxRetries:      d.MaxRetries,
		MaxAttempts:     d.MaxAttempts,
		MaxAlertBytes:   d.MaxAlertBytes,
		BackoffInitial:  d.BackoffInitial,
		BackoffMax:      d.BackoffMax,
		PollInterval:    d.PollInterval,
		LiveWindow:      d.LiveWindow,
		SweepInterval:   d.SweepInterval,
		BackfillRate:    d.BackfillRate,
		IndexRetry:      d.IndexRetry,
		ShutdownTimeout: d.ShutdownTimeout,
		TechniqueFields: cfg.Alerts.Fields,
		Settle:          time.Second,
		Scope:           scope(cfg),
		Instance:        cfg.Daemon.Instance,
		Lease:           cfg.Daemon.Lease,
	}
}

// scope names what the daemon scans: a change of index patterns, query or time field
// starts the backfill over.
func scope(cfg config.Config) string {
	b, _ := json.Marshal([]any{cfg.Alerts.Indices, cfg.Alerts.Query, cfg.Alerts.TimeField})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// reloadOnHUP reloads the rules on SIGHUP. A failed load keeps the rules in use, logs the
// error and sets enricher_ruleset_last_load_successful to 0; a new fingerprint is a new
// generation, which the backfill applies to the history.
func reloadOnHUP(ctx context.Context, cfg config.Config, parts *pipelineParts, r *runner.Runner, m *metrics.Metrics, log *slog.Logger) {
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
		r.SetPipeline(parts.pipeline)
		log.Info("rules reloaded", "ruleset", rs.Version(), "fingerprint", parts.pipeline.Generation().Hash[:12], "mappings", rs.Len())
	}
}
