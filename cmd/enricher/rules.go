package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/enricher-dev/enricher/rules"
)

func rulesCommand() command {
	return command{summary: "import, show, list and check ATT&CK mapping rules", run: runRules}
}

const rulesUsage = `usage:
  enricher rules import --out DIR SOURCE...
  enricher rules show [--rules DIR] [--source SRC]... [--keep-all] [--parent] [--format table|json] ID
  enricher rules list [--rules DIR] [--keep-all] [--sources] [--format table|json] [SOURCE...]
  enricher rules check [--rules DIR] [--keep-all] [SOURCE...]

SOURCE is a CTID Mappings Explorer file (unified JSON) or a rules YAML file, by path or http(s) URL.
Without --rules and sources, the built-in rules are used.`

func runRules(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, rulesUsage)
		return usagef("missing subcommand")
	}
	switch args[0] {
	case "import":
		return rulesImport(ctx, e, args[1:])
	case "show":
		return rulesShow(ctx, e, args[1:])
	case "list":
		return rulesList(ctx, e, args[1:])
	case "check":
		return rulesCheck(ctx, e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(e.stderr, rulesUsage)
		return flag.ErrHelp
	}
	fmt.Fprintln(e.stderr, rulesUsage)
	return usagef("unknown subcommand %q", args[0])
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ruleFlags are the flags that say which rules to load.
type ruleFlags struct {
	dir     string
	sources multiFlag
	keepAll bool
}

func (r *ruleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.dir, "rules", "", "rules folder (YAML per framework release, optional tables); default: built-in rules")
	fs.Var(&r.sources, "source", "CTID JSON or rules YAML `path or URL` to load as well (repeatable)")
	fs.BoolVar(&r.keepAll, "keep-all", false, "keep every release of a framework instead of the newest")
}

func (r *ruleFlags) load(ctx context.Context, e env) (*rules.Ruleset, error) {
	cfg := rules.LoadConfig{Dir: r.dir, Sources: r.sources, KeepAllReleases: r.keepAll, Progress: progress(e, "loading")}
	return rules.Load(ctx, cfg)
}

// progress returns a progress callback that writes to stderr only when it is a terminal.
func progress(e env, verb string) func(done, total int, src string) {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(done, total int, src string) {
		if total < 2 {
			return
		}
		if done == total {
			fmt.Fprintf(f, "\r\033[K%s %d/%d done\n", verb, done, total)
			return
		}
		fmt.Fprintf(f, "\r\033[K%s %d/%d %s", verb, done+1, total, filepath.Base(src))
	}
}

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return usagef("--format must be table or json, not %q", f)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func skippedText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += v
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

func rulesImport(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("rules import", e)
	out := fs.String("out", "", "folder to write the rules YAML files into (created if missing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out DIR is required")
	}
	if fs.NArg() == 0 {
		return usagef("no SOURCE given (a CTID JSON file path or http(s) URL)")
	}
	res, err := rules.Import(ctx, rules.ImportConfig{Out: *out, Sources: fs.Args(), Progress: progress(e, "importing")})
	if err != nil {
		var ce *rules.ContentError
		if errors.As(err, &ce) {
			return fmt.Errorf("invalid content: %w; nothing was written", err)
		}
		return fmt.Errorf("%w; nothing was written", err)
	}
	for _, r := range res {
		if r.SameAs != "" {
			fmt.Fprintf(e.stdout, "%s: %s: same release and content as %s, written once\n", r.Path, r.Release.Label(), r.SameAs)
			continue
		}
		fmt.Fprintf(e.stdout, "%s: %s: %d mappings, skipped %s\n", r.Path, r.Release.Label(), r.Mappings, skippedText(r.Release.Skipped))
	}
	return nil
}

// showGroup is one framework release's mappings for a technique, as `rules show` prints it.
type showGroup struct {
	Source   *rules.Source    `json:"source"`
	Inherit  string           `json:"inherited_from,omitempty"`
	Mappings []*rules.Mapping `json:"mappings"`
}

type showResult struct {
	Technique  string            `json:"technique"`
	Name       string            `json:"name,omitempty"`
	Revoked    *rules.Revocation `json:"revoked,omitempty"`
	Frameworks []showGroup       `json:"frameworks"`
	Ruleset    map[string]string `json:"ruleset"`
}

func rulesShow(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("rules show", e)
	var rf ruleFlags
	rf.register(fs)
	format := fs.String("format", "table", "output format: table or json")
	parent := fs.Bool("parent", false, "also show the parent technique's mappings, marked inherited")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one technique ID, e.g. T1021.002")
	}
	id := rules.NormalizeTechniqueID(fs.Arg(0))
	if !rules.IsTechniqueID(id) {
		return usagef("%q is not an ATT&CK technique ID (want T1234 or T1234.567)", fs.Arg(0))
	}
	rs, err := rf.load(ctx, e)
	if err != nil {
		return err
	}
	res := showResult{Technique: id, Name: rs.Name(id), Frameworks: []showGroup{},
		Ruleset: map[string]string{"version": rs.Version(), "hash": rs.Hash()}}
	targets := []string{id}
	if r, ok := rs.Tables().Revoked(id); ok {
		rv := r
		res.Revoked = &rv
		targets = r.ReplacedBy
	}
	add := func(ms []*rules.Mapping, inherit string) {
		for _, m := range ms {
			n := len(res.Frameworks)
			if n == 0 || res.Frameworks[n-1].Source != m.Source || res.Frameworks[n-1].Inherit != inherit {
				res.Frameworks = append(res.Frameworks, showGroup{Source: m.Source, Inherit: inherit})
				n++
			}
			res.Frameworks[n-1].Mappings = append(res.Frameworks[n-1].Mappings, m)
		}
	}
	for _, t := range targets {
		add(bySource(rs.Mappings(t)), "")
	}
	if *parent {
		for _, t := range targets {
			if p, ms := rs.ParentMappings(t); p != "" {
				add(bySource(ms), p)
			}
		}
	}
	if *format == "json" {
		return writeJSON(e.stdout, res)
	}
	return printShow(e.stdout, rs, res, targets)
}

// bySource orders mappings by framework release, keeping the ruleset's order within one.
func bySource(ms []*rules.Mapping) []*rules.Mapping {
	out := append([]*rules.Mapping(nil), ms...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Source, out[j].Source
		if a.Framework != b.Framework {
			return a.Framework < b.Framework
		}
		if a.FrameworkVersion != b.FrameworkVersion {
			return a.FrameworkVersion < b.FrameworkVersion
		}
		return a.AttackVersion < b.AttackVersion
	})
	return out
}

func printShow(w io.Writer, rs *rules.Ruleset, res showResult, targets []string) error {
	title := res.Technique
	if res.Name != "" {
		title += " " + res.Name
	}
	fmt.Fprintln(w, title)
	if res.Revoked != nil {
		fmt.Fprintf(w, "%s is revoked or deprecated; showing %s\n", res.Technique, strings.Join(targets, ", "))
	}
	if len(res.Frameworks) == 0 {
		fmt.Fprintln(w, "no mappings in the loaded rules")
		if p := rules.Parent(res.Technique); p != "" && len(rs.Mappings(p)) > 0 {
			fmt.Fprintf(w, "%s has %d mappings (--parent shows them)\n", p, len(rs.Mappings(p)))
		}
		return nil
	}
	for _, g := range res.Frameworks {
		fmt.Fprintln(w)
		head := "== " + g.Source.Label()
		if g.Inherit != "" {
			head += ", inherited from parent " + g.Inherit
		}
		fmt.Fprintf(w, "%s: %d mappings\n", head, len(g.Mappings))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CAPABILITY\tDESCRIPTION\tMAPPING TYPE\tSCORE")
		for _, m := range g.Mappings {
			id := m.CapabilityID
			if m.SourceCapabilityID != "" {
				id += " (" + m.SourceCapabilityID + ")"
			}
			mt := m.MappingType
			if m.SourceMappingType != "" {
				mt += " (" + m.SourceMappingType + ")"
			}
			score := "-"
			if m.ScoreCategory != "" || m.ScoreValue != "" {
				score = m.ScoreCategory + "/" + m.ScoreValue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id, m.Capability, mt, score)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, m := range g.Mappings {
			var lines []string
			if m.Comments != "" {
				lines = append(lines, "comments: "+strings.Join(strings.Fields(m.Comments), " "))
			}
			if len(m.Alerts) > 0 {
				as := make([]string, len(m.Alerts))
				for i, a := range m.Alerts {
					as[i] = a.ID + " " + a.Name
				}
				lines = append(lines, "alerts: "+strings.Join(as, "; "))
			}
			if len(m.Queries) > 0 {
				lines = append(lines, "queries: "+strings.Join(m.Queries, "; "))
			}
			if len(m.Events) > 0 {
				es := make([]string, len(m.Events))
				for i, ev := range m.Events {
					es[i] = ev.ID
					if ev.LogonType != "" {
						es[i] += " logon type " + ev.LogonType
					}
				}
				lines = append(lines, "windows events: "+strings.Join(es, "; "))
			}
			for _, r := range m.References {
				lines = append(lines, "reference: "+r)
			}
			if m.SourceTechnique != "" {
				lines = append(lines, "published for revoked "+m.SourceTechnique)
			}
			if len(m.AlsoIn) > 0 {
				also := make([]string, len(m.AlsoIn))
				for i, s := range m.AlsoIn {
					also[i] = s.Label()
				}
				lines = append(lines, "also in: "+strings.Join(also, "; "))
			}
			if len(lines) == 0 {
				continue
			}
			fmt.Fprintf(w, "  %s:\n", m.CapabilityID)
			for _, l := range lines {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	return nil
}

type techniqueRow struct {
	Technique  string   `json:"technique"`
	Name       string   `json:"name,omitempty"`
	Controls   int      `json:"controls"`
	Detections int      `json:"detections"`
	Related    int      `json:"related"`
	Frameworks []string `json:"frameworks"`
}

type sourceRow struct {
	*rules.Source
	Mappings int  `json:"mappings"`
	Dropped  bool `json:"dropped,omitempty"`
}

func rulesList(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("rules list", e)
	var rf ruleFlags
	rf.register(fs)
	format := fs.String("format", "table", "output format: table or json")
	sources := fs.Bool("sources", false, "list framework releases instead of techniques")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	rf.sources = append(rf.sources, fs.Args()...)
	rs, err := rf.load(ctx, e)
	if err != nil {
		return err
	}
	if *sources {
		rows := sourceRows(rs)
		if *format == "json" {
			return writeJSON(e.stdout, rows)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FRAMEWORK\tVERSION\tATT&CK\tMAPPINGS\tSKIPPED\tPATH")
		for _, r := range rows {
			n := fmt.Sprint(r.Mappings)
			if r.Dropped {
				n = "dropped"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Framework, r.FrameworkVersion, r.AttackVersion, n, skippedText(r.Skipped), r.Path)
		}
		return tw.Flush()
	}
	var rows []techniqueRow
	for _, id := range rs.Techniques() {
		r := techniqueRow{Technique: id, Name: rs.Name(id), Frameworks: []string{}}
		for _, m := range rs.Mappings(id) {
			switch m.Kind {
			case rules.KindControl:
				r.Controls++
			case rules.KindDetection:
				r.Detections++
			default:
				r.Related++
			}
			if !contains(r.Frameworks, m.Source.Framework) {
				r.Frameworks = append(r.Frameworks, m.Source.Framework)
			}
		}
		rows = append(rows, r)
	}
	if *format == "json" {
		if rows == nil {
			rows = []techniqueRow{}
		}
		return writeJSON(e.stdout, rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TECHNIQUE\tNAME\tCONTROLS\tDETECTIONS\tRELATED\tFRAMEWORKS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", r.Technique, r.Name, r.Controls, r.Detections, r.Related, strings.Join(r.Frameworks, ","))
	}
	fmt.Fprintf(tw, "%d techniques, %d mappings\n", len(rows), rs.Len())
	return tw.Flush()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sourceRows(rs *rules.Ruleset) []sourceRow {
	count := map[*rules.Source]int{}
	for _, id := range rs.Techniques() {
		for _, m := range rs.Mappings(id) {
			count[m.Source]++
		}
	}
	var rows []sourceRow
	for _, s := range rs.Sources() {
		rows = append(rows, sourceRow{Source: s, Mappings: count[s]})
	}
	for _, s := range rs.Report().Dropped {
		rows = append(rows, sourceRow{Source: s, Dropped: true})
	}
	if rows == nil {
		rows = []sourceRow{}
	}
	return rows
}

func rulesCheck(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("rules check", e)
	var rf ruleFlags
	rf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rf.sources = append(rf.sources, fs.Args()...)
	rs, err := rf.load(ctx, e)
	if err != nil {
		var ce *rules.ContentError
		if errors.As(err, &ce) {
			return fmt.Errorf("invalid content: %w", err)
		}
		return err
	}
	w := e.stdout
	rep := rs.Report()
	fmt.Fprintf(w, "ruleset %s (hash %.12s): %d mappings over %d techniques from %d of %d files\n",
		rs.Version(), rs.Hash(), rs.Len(), len(rs.Techniques()), len(rs.Sources()), len(rep.Files))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range sourceRows(rs) {
		n := fmt.Sprintf("%d mappings", r.Mappings)
		if r.Dropped {
			n = "dropped"
		}
		fmt.Fprintf(tw, "  %s\t%s\tskipped %s\t%s\n", r.Label(), n, skippedText(rep.SkippedByFile[r.Path]), r.Path)
	}
	tw.Flush()
	section := func(title string, items []string) {
		fmt.Fprintf(w, "%s: %d\n", title, len(items))
		for _, it := range items {
			fmt.Fprintf(w, "  %s\n", it)
		}
	}
	var dropped []string
	for _, s := range rep.Dropped {
		dropped = append(dropped, fmt.Sprintf("%s (%s): a newer release of %s is loaded; --keep-all keeps it", s.Label(), s.Path, s.Framework))
	}
	fmt.Fprintf(w, "skipped rows: %s\n", skippedText(rep.Skipped))
	section("dropped releases", dropped)
	section("unknown values (kept)", rep.Unknown)
	section("revoked technique IDs (moved to replacements)", rep.Revoked)
	section("conflicts (newer release used)", rep.Conflicts)
	fmt.Fprintf(w, "same-release rows: %d identical dropped, %d merged\n", rep.Duplicates, rep.Merged)
	fmt.Fprintln(w, "ok")
	return nil
}
