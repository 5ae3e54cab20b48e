package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/enricher-dev/enricher/enrich/elastic"
)

func requeueCommand() command {
	return command{summary: "make quarantined alerts pending again (by ID, by query, or all)", run: runRequeue}
}

// runRequeue removes the quarantine marker from the alerts selected, so the daemon
// enriches them again at its next pass (the live path for recent alerts, the backfill's
// next sweep for older ones).
func runRequeue(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("requeue", e)
	cfgPath := fs.String("config", "", "config file (YAML)")
	ids := fs.String("ids", "", "comma-separated alert IDs (_id)")
	query := fs.String("query", "", "an Elasticsearch query (JSON object) selecting alerts, e.g. "+
		`'{"term":{"kibana.alert.rule.name":"My rule"}}'`)
	all := fs.Bool("all", false, "every quarantined alert")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	var q map[string]any
	switch n := btoi(*ids != "") + btoi(*query != "") + btoi(*all); {
	case n == 0:
		return usagef("say which alerts: --ids, --query or --all")
	case n > 1:
		return usagef("--ids, --query and --all go alone")
	case *ids != "":
		var list []string
		for _, id := range strings.Split(*ids, ",") {
			if id = strings.TrimSpace(id); id != "" {
				list = append(list, id)
			}
		}
		if len(list) == 0 || len(list) > 10000 {
			return usagef("--ids: want 1 to 10000 IDs, got %d", len(list))
		}
		q = map[string]any{"ids": map[string]any{"values": list}}
	case *query != "":
		if err := json.Unmarshal([]byte(*query), &q); err != nil || q == nil {
			return usagef("--query: not a JSON object: %s", *query)
		}
	}
	cfg, err := loadConfig(*cfgPath, "")
	if err != nil {
		return err
	}
	client, err := elastic.NewClient(cfg.Elasticsearch, nil)
	if err != nil {
		return usageError{err}
	}
	store := elastic.NewStore(client, elastic.StoreOptions{Indices: cfg.Alerts.Indices, TimeField: cfg.Alerts.TimeField,
		Root: cfg.Output.Root, MaxRequestItems: cfg.Daemon.BatchSize, MaxRequestBytes: cfg.Daemon.BulkMaxBytes}, nil)
	res, err := store.Requeue(ctx, cfg.Output.Root, q)
	fmt.Fprintf(e.stdout, "requeued %d of %d quarantined alerts matched (%d changed meanwhile, %d failed)\n",
		res.Requeued, res.Matched, res.Conflicts, res.Failed)
	if err != nil {
		return err
	}
	if res.Conflicts+res.Failed > 0 {
		return fmt.Errorf("%d alerts not requeued; run the command again", res.Conflicts+res.Failed)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
