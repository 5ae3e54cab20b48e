package main

import (
	"context"
	"fmt"

	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

func sampleCommand() command {
	return command{summary: "load realistic sample alerts (Kibana, Elastic Defend, Wazuh, Sigma) into Elasticsearch", run: runSample}
}

func runSample(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("sample", e)
	cfgPath := fs.String("config", "", "config file (YAML), for the Elasticsearch connection")
	count := fs.Int("count", 500, "number of alerts")
	seed := fs.Uint64("seed", 1, "random seed (the same seed gives the same alerts)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *count < 1 {
		return usagef("--count must be >= 1, got %d", *count)
	}
	cfg, err := loadConfig(*cfgPath, "")
	if err != nil {
		return err
	}
	c, err := elastic.NewClient(cfg.Elasticsearch, nil)
	if err != nil {
		return usageError{err}
	}
	if err := sample.Setup(ctx, c); err != nil {
		return fmt.Errorf("create sample indices: %w", err)
	}
	docs := sample.Generate(*count, *seed)
	if err := sample.Load(ctx, c, docs); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "loaded %d sample alerts into %v\n", len(docs), sample.Indices)
	return nil
}
