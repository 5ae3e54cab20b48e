package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/rules/coverage"
)

func coverageCommand() command {
	return command{summary: "audit ATT&CK coverage: rules, controls and product detections per technique, and gaps", run: runCoverage}
}

const coverageUsage = `usage: enricher coverage [flags] PATH...

Each PATH is a rule file or a folder (walked recursively). Rule files are recognized from their
content: Elastic detection-rules TOML, Elastic hunting TOML, Elastic Defend TOML, Kibana rule
export NDJSON, Sigma YAML, Sentinel YAML. Alerts are counted when --es-url or --since is given.

flags:`

func runCoverage(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("coverage", e)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, coverageUsage)
		fs.PrintDefaults()
	}
	var rf ruleFlags
	rf.register(fs)
	format := fs.String("format", coverage.OutputTable, "output `format`: "+strings.Join(coverage.Outputs, ", "))
	out := fs.String("out", "", "write the output to `FILE` instead of stdout")
	workers := fs.Int("workers", 0, "files parsed at once (default: number of CPUs)")
	onlyRules := fs.Bool("only-rule-techniques", false, "list only techniques some rule names (leave out mapped-only ones)")
	cfgPath := fs.String("config", "", "daemon config `file`: the store, its credentials, the alert indices and technique fields alerts are counted by (default: defaults and environment)")
	esURL := fs.String("es-url", "", "Elasticsearch or OpenSearch `URL` for alert counts and --to-es (default elasticsearch.urls of --config, $ELASTICSEARCH_URL, then http://127.0.0.1:9200)")
	since := fs.String("since", "", "count alerts from this long ago: 30d, 12h, 2w, an RFC 3339 time, or all (default 30d when --es-url is given)")
	alertsIndex := fs.String("alerts-index", "", "alerts index `patterns`, comma-separated (hidden indices included; default alerts.indices of --config)")
	toES := fs.Bool("to-es", false, "write one coverage document per technique to --index")
	index := fs.String("index", coverage.DefaultIndex, "coverage `index` for --to-es")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		fs.Usage()
		return usagef("no rule files or folders given")
	}
	if !validFormat(*format) {
		return usagef("--format must be one of %s, not %q", strings.Join(coverage.Outputs, ", "), *format)
	}
	if *workers < 0 {
		return usagef("--workers must be >= 0, got %d", *workers)
	}
	countAlerts := *esURL != "" || *since != ""
	sinceQuery := ""
	if countAlerts {
		if *since == "" {
			*since = "30d"
		}
		q, err := sinceDateMath(*since)
		if err != nil {
			return usageError{err}
		}
		sinceQuery = q
	}
	var (
		client *elastic.Client
		cfg    config.Config
	)
	if countAlerts || *toES {
		var err error
		if cfg, client, err = coverageStore(e, *cfgPath, *esURL); err != nil {
			return err
		}
	}

	rs, err := rf.load(ctx, e)
	if err != nil {
		return fmt.Errorf("load mapping rules: %w", err)
	}
	files, err := coverage.ListFiles(paths)
	if err != nil {
		return usageError{err}
	}
	p := newScanProgress(e, len(files))
	scan, err := coverage.ScanFiles(ctx, files, coverage.ScanOptions{Workers: *workers, Progress: p.update})
	p.finish()
	if err != nil {
		return fmt.Errorf("scan rules: %w", err)
	}
	opts := coverage.BuildOptions{Ruleset: rs, RunID: newRunID(), Now: time.Now(), OnlyRuleTechniques: *onlyRules}
	if countAlerts {
		q := coverage.AlertQuery{Index: *alertsIndex, Since: sinceQuery, TimeField: cfg.Alerts.TimeField}
		if q.Index == "" {
			q.Index = strings.Join(cfg.Alerts.Indices, ",")
		}
		for _, f := range cfg.Alerts.Fields {
			kind := f.Kind
			af := coverage.AlertField{Path: f.Path, Technique: func(v string) (string, bool) { return enrich.ReadTechnique(v, kind) }}
			if kind == enrich.FieldTag {
				af.Include = coverage.TechniqueTags
			}
			q.Fields = append(q.Fields, af)
		}
		counts, skipped, err := coverage.AlertCounts(ctx, client, q)
		if err != nil {
			return err
		}
		for _, f := range skipped {
			fmt.Fprintf(e.stderr, "enricher coverage: alerts not counted by %s: no index maps it as a keyword\n", f)
		}
		opts.Alerts, opts.AlertsSince = counts, *since
	}
	rep := coverage.Build(scan, opts)

	if err := writeCoverage(e, rep, *format, *out); err != nil {
		return err
	}
	for _, iss := range rep.Errors {
		fmt.Fprintf(e.stderr, "enricher coverage: unreadable rule file: %s\n", iss)
	}
	if *toES {
		n, err := coverage.WriteIndex(ctx, client, rep, coverage.WriteOptions{Index: *index, Refresh: "wait_for"})
		if err != nil {
			return fmt.Errorf("write coverage to %s: %w", *index, err)
		}
		fmt.Fprintf(e.stderr, "enricher coverage: wrote %d documents to %s (run %s)\n", n, *index, rep.RunID)
	}
	return nil
}

func validFormat(f string) bool {
	for _, x := range coverage.Outputs {
		if f == x {
			return true
		}
	}
	return false
}

func writeCoverage(e env, rep *coverage.Report, format, out string) error {
	if out == "" {
		return coverage.Write(e.stdout, rep, format)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := coverage.Write(f, rep, format); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "enricher coverage: %d rules, %d techniques, %d with gaps; wrote %s\n",
		rep.Rules, len(rep.Techniques), len(rep.WithGaps()), out)
	return nil
}

var relSince = regexp.MustCompile(`^([0-9]+)([smhdwMy])$`)

// sinceDateMath turns --since into an Elasticsearch lower bound: "30d" -> "now-30d";
// an RFC 3339 time is passed as is; "all" means no bound.
func sinceDateMath(s string) (string, error) {
	switch {
	case s == "all":
		return "", nil
	case relSince.MatchString(s):
		return "now-" + s, nil
	}
	if _, err := time.Parse(time.RFC3339, s); err == nil {
		return s, nil
	}
	return "", fmt.Errorf("--since %q: want a duration like 30d, 12h, 2w, an RFC 3339 time, or all", s)
}

// coverageStore is the daemon's configuration and client for --es-url and --to-es: the
// same store, credentials, TLS settings, alert indices and technique fields.
func coverageStore(e env, cfgPath, esURL string) (config.Config, *elastic.Client, error) {
	if esURL == "" && cfgPath == "" {
		esURL = e.getenv("ELASTICSEARCH_URL")
	}
	var flags []config.Flag
	if esURL != "" {
		flags = append(flags, config.Flag{Name: "--es-url", Field: "elasticsearch.urls",
			Set: func(c *config.Config) { c.Elasticsearch.URLs = config.SplitURLs(esURL) }})
	}
	cfg, err := config.LoadWith(cfgPath, flags)
	if err != nil {
		return cfg, nil, usageError{err}
	}
	// A count over all history is one aggregation over every alert: more time than a
	// daemon's request needs.
	cfg.Elasticsearch.RequestTimeout = max(cfg.Elasticsearch.RequestTimeout, 5*time.Minute)
	client, err := elastic.NewClient(cfg.Elasticsearch, nil)
	if err != nil {
		return cfg, nil, usageError{err}
	}
	return cfg, client, nil
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// scanProgress prints "scanning n/total files" on stderr, only when it is a terminal,
// at most ten times a second.
type scanProgress struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	last  time.Time
	shown bool
}

func newScanProgress(e env, total int) *scanProgress {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || total < 200 {
		return &scanProgress{}
	}
	return &scanProgress{w: f, total: total}
}

func (p *scanProgress) update(done, total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last, p.shown = now, true
		fmt.Fprintf(p.w, "\r\033[Kscanning %d/%d files", done, total)
	}
}

func (p *scanProgress) finish() {
	if p.w == nil || !p.shown {
		return
	}
	fmt.Fprintf(p.w, "\r\033[Kscanned %d files\n", p.total)
}
