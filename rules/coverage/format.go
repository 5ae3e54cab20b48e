package coverage

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Output formats.
const (
	OutputTable     = "table"
	OutputMarkdown  = "markdown"
	OutputJSON      = "json"
	OutputCSV       = "csv"
	OutputNavigator = "navigator"
)

// Outputs lists the output formats Write accepts.
var Outputs = []string{OutputTable, OutputMarkdown, OutputJSON, OutputCSV, OutputNavigator}

// Write renders the report in one of Outputs.
func Write(w io.Writer, rep *Report, format string) error {
	switch format {
	case OutputTable:
		return WriteTable(w, rep)
	case OutputMarkdown:
		return WriteMarkdown(w, rep)
	case OutputJSON:
		return WriteJSON(w, rep)
	case OutputCSV:
		return WriteCSV(w, rep)
	case OutputNavigator:
		return WriteNavigator(w, rep)
	}
	return fmt.Errorf("unknown output format %q (want one of %s)", format, strings.Join(Outputs, ", "))
}

// WriteJSON writes the whole report as indented JSON.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func alertsCell(t *Technique) string {
	if t.Alerts == nil {
		return "-"
	}
	return strconv.FormatInt(*t.Alerts, 10)
}

func enabledCell(t *Technique) string {
	known := 0
	for _, r := range t.Rules {
		if r.Enabled != nil {
			known++
		}
	}
	if known == 0 {
		return "-"
	}
	return strconv.Itoa(t.EnabledRules)
}

func revokedCell(t *Technique) string {
	switch {
	case t.Revoked != nil:
		return "revoked -> " + strings.Join(t.Revoked.ReplacedBy, ",")
	case len(t.RevokedIDs) > 0:
		return "via " + strings.Join(t.RevokedIDs, ",")
	}
	return ""
}

func summary(rep *Report) string {
	var src []string
	for _, f := range []Format{FormatElastic, FormatElasticHunting, FormatElasticEndpoint, FormatKibanaExport, FormatSigma, FormatSentinel} {
		if n := rep.RulesBySource[f]; n > 0 {
			src = append(src, fmt.Sprintf("%s %d", f, n))
		}
	}
	s := fmt.Sprintf("%d files, %d rules (%s), %d techniques, %d with gaps, %d unreadable files",
		rep.Files, rep.Rules, strings.Join(src, ", "), len(rep.Techniques), len(rep.WithGaps()), len(rep.Errors))
	if rep.RulesetVersion != "" {
		s += fmt.Sprintf("; ruleset %s", rep.RulesetVersion)
	}
	if rep.AlertsCounted {
		s += fmt.Sprintf("; alerts since %s", rep.AlertsSince)
	}
	return s
}

// WriteTable writes an aligned text table for a terminal: one line a technique, then the
// files that could not be read.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TECHNIQUE\tNAME\tRULES\tENABLED\tPARENT RULES\tCONTROLS\tDETECTIONS\tALERTS\tGAPS\tREVOKED")
	for _, t := range rep.Techniques {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", t.ID, truncate(t.Name, 40), t.RuleCount(), enabledCell(t),
			len(t.ParentRules), len(t.Controls), len(t.Detections), alertsCell(t), strings.Join(t.Gaps, ","), revokedCell(t))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n", summary(rep))
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "unreadable: %s\n", e)
	}
	return nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", "").Replace(s)
}

// WriteMarkdown writes a summary table and, per technique with rules, the rules, controls
// and detections.
func WriteMarkdown(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "# ATT&CK coverage\n\n%s.\n\n", summary(rep))
	fmt.Fprintln(w, "| Technique | Name | Rules | Enabled | Parent rules | Controls | Detections | Alerts | Gaps |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|")
	for _, t := range rep.Techniques {
		gaps := strings.Join(t.Gaps, ", ")
		if rc := revokedCell(t); rc != "" {
			gaps = joinNonEmpty("; ", gaps, rc)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %d | %d | %d | %s | %s |\n", t.ID, mdEscape(t.Name), t.RuleCount(), enabledCell(t),
			len(t.ParentRules), len(t.Controls), len(t.Detections), alertsCell(t), mdEscape(gaps))
	}
	for _, t := range rep.Techniques {
		if len(t.Rules) == 0 && len(t.Detections) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n## %s %s\n", t.ID, mdEscape(t.Name))
		if len(t.Rules) > 0 {
			fmt.Fprintln(w, "\nRules:")
			for _, r := range t.Rules {
				extra := ""
				if r.Enabled != nil {
					extra = fmt.Sprintf(", enabled %t", *r.Enabled)
				}
				if r.Via != "" {
					extra += ", via revoked " + r.Via
				}
				fmt.Fprintf(w, "- %s: %s (`%s`%s)\n", r.Source, mdEscape(r.Name), r.ID, extra)
			}
		}
		if len(t.Detections) > 0 {
			fmt.Fprintln(w, "\nProduct detections:")
			for _, m := range t.Detections {
				fmt.Fprintf(w, "- %s\n", mdEscape(detectionLabel(m)))
			}
		}
		if len(t.Controls) > 0 {
			fmt.Fprintf(w, "\nControls: %s\n", mdEscape(controlsByRelease(t.Controls)))
		}
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintln(w, "\n## Unreadable rule files")
		fmt.Fprintln(w)
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "- `%s`\n", mdEscape(e.String()))
		}
	}
	return nil
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"technique", "name", "parent", "tactics", "rule_count", "enabled_rules", "rule_ids", "rule_names",
	"parent_rule_count", "subtechnique_rule_count", "control_count", "controls", "detection_count", "detections",
	"alerts", "gaps", "revoked_replaced_by", "via_revoked_ids"}

// WriteCSV writes one row a technique; lists are joined with ";".
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, t := range rep.Techniques {
		var ids, names []string
		for _, r := range t.Rules {
			ids = append(ids, r.ID)
			names = append(names, r.Name)
		}
		alerts := ""
		if t.Alerts != nil {
			alerts = strconv.FormatInt(*t.Alerts, 10)
		}
		var replaced []string
		if t.Revoked != nil {
			replaced = t.Revoked.ReplacedBy
		}
		row := []string{t.ID, t.Name, t.Parent, strings.Join(t.Tactics, ";"), strconv.Itoa(t.RuleCount()), strconv.Itoa(t.EnabledRules),
			strings.Join(ids, ";"), strings.Join(names, ";"), strconv.Itoa(len(t.ParentRules)), strconv.Itoa(t.SubtechniqueRules),
			strconv.Itoa(len(t.Controls)), strings.Join(capabilityIDs(t.Controls), ";"), strconv.Itoa(len(t.Detections)),
			strings.Join(capabilityIDs(t.Detections), ";"), alerts, strings.Join(t.Gaps, ";"), strings.Join(replaced, ";"), strings.Join(t.RevokedIDs, ";")}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
