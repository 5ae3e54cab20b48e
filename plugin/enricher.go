package plugin

import (
	"context"

	"github.com/enricher-dev/enricher/enrich"
)

// Info is what a plugin says about itself (the Describe RPC).
type Info struct {
	// Name and Version identify the plugin in logs.
	Name    string
	Version string
	// Namespace is the one top-level alert field the plugin writes. The host requires it
	// to equal the plugin's `name` in the daemon's config.
	Namespace string
	// Fields are the _source field paths the plugin reads ("host.name"). Alerts reach the
	// plugin with only these fields. Empty means the whole fetched _source.
	Fields []string
}

// Enricher is what a plugin author implements and hands to Serve. The host calls
// Configure and Describe once per process start, in that order, then Enrich any number
// of times, possibly concurrently.
type Enricher interface {
	// Configure receives the plugin's `config` map from the daemon's configuration
	// (empty, never nil, when unset). An error refuses the start; the host reports it.
	Configure(ctx context.Context, config map[string]any) error
	// Describe says who the plugin is, where it writes and what it reads. It may depend
	// on the configuration (e.g. a configurable namespace).
	Describe(ctx context.Context) (Info, error)
	// Enrich returns one patch per alert, in order; a nil patch adds nothing. A patch has
	// one key, the namespace. Alerts are read-only. An error fails the whole batch, which
	// the daemon retries later, so Enrich must be safe to repeat (idempotent). Honour ctx:
	// the host cancels a call at its timeout and then kills the process.
	Enrich(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error)
}
