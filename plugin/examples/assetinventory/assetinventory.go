// Package assetinventory is an example enricher plugin that a SOC can use as is: it adds
// host criticality, owner and business unit from a CSV asset inventory to each alert,
// matched on host.name (then host.hostname), case-insensitively.
//
// The binary is cmd/enricher-asset-inventory; see README.md for building, checksumming
// and configuring it. The package is importable so tests and benchmarks can call the
// same enrichment in-process.
//
// Costs: the inventory is read once per process start into a map; a lookup is a map
// access per host value. Caveats: editing the CSV takes effect when the plugin restarts
// (restart the daemon). Hosts not in the inventory get no patch unless
// unknown_criticality is set.
package assetinventory

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin"
)

// Version of the plugin.
const Version = "1.0.0"

// DefaultNamespace is the field the plugin writes unless configured otherwise.
const DefaultNamespace = "asset"

// Fields are the alert fields the plugin reads, in match order.
var Fields = []string{"host.name", "host.hostname"}

// Asset is one inventory row.
type Asset struct {
	Host         string
	Criticality  string
	Owner        string
	BusinessUnit string
}

// Config is the plugin's `config` map, decoded.
type Config struct {
	// Inventory is the path of the CSV file (required). Header row required; columns
	// hostname (required), criticality, owner, business_unit, in any order; others ignored.
	Inventory string
	// Namespace is the field to write; it must equal the plugin's name in the daemon config.
	Namespace string
	// UnknownCriticality, when set, is written as the criticality of hosts not in the
	// inventory (with matched_on "none"), so unknown hosts stand out.
	UnknownCriticality string

	// Test knobs, for enricher's own tests only. Counts are per process.

	// CrashAfterCalls N >= 0 makes the process exit in the middle of Enrich call N+1
	// (0: every call). -1, the default, turns it off.
	CrashAfterCalls int
	// HangAfterCalls N >= 0 makes Enrich call N+1 and later ones block forever, ignoring
	// ctx (0: every call). -1, the default, turns it off.
	HangAfterCalls int
	// WriteOutsideNamespace adds a forbidden top-level "host" key to every patch.
	WriteOutsideNamespace bool
}

// Plugin implements plugin.Enricher.
type Plugin struct {
	log   *slog.Logger
	calls atomic.Int64

	mu     sync.RWMutex
	cfg    Config
	assets map[string]Asset // lower-case host name -> asset
	short  map[string]Asset // lower-case short name (before the first dot) of an FQDN entry -> asset, when unique
}

var _ plugin.Enricher = (*Plugin)(nil)

// New returns an unconfigured plugin. A nil log discards logs.
func New(log *slog.Logger) *Plugin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Plugin{log: log}
}

// ParseConfig decodes the plugin's config map strictly: unknown keys are errors.
func ParseConfig(m map[string]any) (Config, error) {
	cfg := Config{Namespace: DefaultNamespace, CrashAfterCalls: -1, HangAfterCalls: -1}
	for k, v := range m {
		var err error
		switch k {
		case "inventory":
			cfg.Inventory, err = str(v)
		case "namespace":
			cfg.Namespace, err = str(v)
		case "unknown_criticality":
			cfg.UnknownCriticality, err = str(v)
		case "crash_after_calls":
			cfg.CrashAfterCalls, err = integer(v)
		case "hang_after_calls":
			cfg.HangAfterCalls, err = integer(v)
		case "write_outside_namespace":
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("want true or false, got %v", v)
			}
			cfg.WriteOutsideNamespace = b
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return cfg, fmt.Errorf("config.%s: %w", k, err)
		}
	}
	if cfg.Inventory == "" {
		return cfg, errors.New("config.inventory: must be set to the CSV file's path")
	}
	if cfg.Namespace == "" || strings.Contains(cfg.Namespace, ".") {
		return cfg, fmt.Errorf("config.namespace: must be one field name, got %q", cfg.Namespace)
	}
	return cfg, nil
}

func str(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %v", v)
	}
	return s, nil
}

func integer(v any) (int, error) {
	switch x := v.(type) {
	case interface{ Int64() (int64, error) }: // json.Number
		n, err := x.Int64()
		return int(n), err
	case float64:
		if x == float64(int(x)) {
			return int(x), nil
		}
	case int:
		return x, nil
	case string:
		return strconv.Atoi(x)
	}
	return 0, fmt.Errorf("want an integer, got %v", v)
}

// Configure implements plugin.Enricher: it decodes the config and loads the inventory.
func (p *Plugin) Configure(_ context.Context, m map[string]any) error {
	cfg, err := ParseConfig(m)
	if err != nil {
		return err
	}
	f, err := os.Open(cfg.Inventory)
	if err != nil {
		return fmt.Errorf("open inventory: %w", err)
	}
	defer func() { _ = f.Close() }()
	assets, err := ReadInventory(f)
	if err != nil {
		return fmt.Errorf("read inventory %s: %w", cfg.Inventory, err)
	}
	p.setAssets(cfg, assets)
	p.log.Info("inventory loaded", "path", cfg.Inventory, "hosts", len(assets))
	return nil
}

func (p *Plugin) setAssets(cfg Config, assets []Asset) {
	byName := make(map[string]Asset, len(assets))
	short := make(map[string]Asset, len(assets))
	dup := map[string]bool{}
	for _, a := range assets {
		k := strings.ToLower(a.Host)
		byName[k] = a
		s, _, fqdn := strings.Cut(k, ".")
		if !fqdn {
			continue // a short entry is matched through byName
		}
		if prev, seen := short[s]; seen && !strings.EqualFold(prev.Host, a.Host) {
			dup[s] = true
		}
		short[s] = a
	}
	for s := range dup {
		delete(short, s) // ambiguous short names match nothing
	}
	p.mu.Lock()
	p.cfg, p.assets, p.short = cfg, byName, short
	p.mu.Unlock()
}

// ReadInventory reads the CSV inventory: a header row naming the columns, then one row
// per host. Blank host names are skipped.
func ReadInventory(r io.Reader) ([]Asset, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	hi, ok := col["hostname"]
	if !ok {
		return nil, errors.New("header: no hostname column")
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var out []Asset
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if hi >= len(rec) || strings.TrimSpace(rec[hi]) == "" {
			continue
		}
		out = append(out, Asset{
			Host:         strings.TrimSpace(rec[hi]),
			Criticality:  get(rec, "criticality"),
			Owner:        get(rec, "owner"),
			BusinessUnit: get(rec, "business_unit"),
		})
	}
}

// Describe implements plugin.Enricher.
func (p *Plugin) Describe(context.Context) (plugin.Info, error) {
	p.mu.RLock()
	ns := p.cfg.Namespace
	p.mu.RUnlock()
	if ns == "" {
		ns = DefaultNamespace
	}
	return plugin.Info{Name: "asset-inventory", Version: Version, Namespace: ns, Fields: append([]string(nil), Fields...)}, nil
}

// Enrich implements plugin.Enricher: one patch per alert, nil when no host matches.
func (p *Plugin) Enrich(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
	p.mu.RLock()
	cfg := p.cfg
	p.mu.RUnlock()
	call := p.calls.Add(1)
	if cfg.HangAfterCalls >= 0 && call > int64(cfg.HangAfterCalls) {
		p.log.Warn("test knob: hanging", "call", call)
		select {} // ignores ctx on purpose: the host must kill us
	}
	out := make([]enrich.Patch, len(alerts))
	for i, a := range alerts {
		if cfg.CrashAfterCalls >= 0 && call > int64(cfg.CrashAfterCalls) && i >= len(alerts)/2 {
			p.log.Warn("test knob: crashing", "call", call)
			os.Exit(3)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = p.enrichOne(cfg, a)
	}
	return out, nil
}

func (p *Plugin) enrichOne(cfg Config, a *enrich.Alert) enrich.Patch {
	asset, field, ok := p.lookup(a.Source)
	var doc map[string]any
	switch {
	case ok:
		doc = map[string]any{"host": asset.Host, "matched_on": field}
		for k, v := range map[string]string{"criticality": asset.Criticality, "owner": asset.Owner, "business_unit": asset.BusinessUnit} {
			if v != "" {
				doc[k] = v
			}
		}
	case cfg.UnknownCriticality != "":
		doc = map[string]any{"criticality": cfg.UnknownCriticality, "matched_on": "none"}
	default:
		return nil
	}
	patch := enrich.Patch{cfg.Namespace: doc}
	if cfg.WriteOutsideNamespace {
		patch["host"] = map[string]any{"criticality": doc["criticality"]}
	}
	return patch
}

// lookup finds the alert's host in the inventory: host.name, then host.hostname; for
// each, the full name first, then by short name (before the first dot): a short alert
// name matches an FQDN entry with that short name, an FQDN alert name matches a short
// entry. Two FQDNs that differ only after the first dot (ws-0142.corp and ws-0142.dmz)
// are different hosts and never match.
func (p *Plugin) lookup(src map[string]any) (Asset, string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, f := range Fields {
		for _, v := range enrich.Values(src, f) {
			s, ok := v.(string)
			if !ok || s == "" {
				continue
			}
			k := strings.ToLower(strings.TrimSpace(s))
			if a, ok := p.assets[k]; ok {
				return a, f, true
			}
			if short, _, fqdn := strings.Cut(k, "."); fqdn {
				if a, ok := p.assets[short]; ok {
					return a, f, true
				}
			} else if a, ok := p.short[short]; ok {
				return a, f, true
			}
		}
	}
	return Asset{}, "", false
}
