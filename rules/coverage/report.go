package coverage

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/enricher-dev/enricher/rules"
)

// Gap codes: low-cardinality keywords, stored as-is in the coverage index.
const (
	// GapNoRules: controls or product detections are mapped, but no rule names the technique.
	GapNoRules = "mapped_without_rules"
	// GapNoProductDetection: rules name the technique, but no product detection is mapped.
	GapNoProductDetection = "rules_without_product_detection"
	// GapRevokedID: rules name this revoked or deprecated ID; they should name the replacement.
	GapRevokedID = "revoked_id_in_rules"
	// GapNoAlerts: alerts were counted, rules name the technique, and none fired in the range.
	GapNoAlerts = "rules_without_alerts"
	// GapAlertsWithoutRules: alerts carry the technique, but none of the scanned rules name it.
	GapAlertsWithoutRules = "alerts_without_rules"
)

// RuleRef is a rule as listed under a technique.
type RuleRef struct {
	Source  Format `json:"source"`
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Enabled *bool  `json:"enabled,omitempty"`
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	// Via is the revoked or deprecated ID the rule names, when it is counted for this
	// technique as that ID's replacement.
	Via string `json:"via,omitempty"`
}

// MappingRef is a control or product detection mapped to a technique.
type MappingRef struct {
	Framework        string               `json:"framework"`
	FrameworkVersion string               `json:"framework_version"`
	AttackVersion    string               `json:"attack_version,omitempty"`
	CapabilityID     string               `json:"capability_id"`
	Capability       string               `json:"capability"`
	MappingType      string               `json:"mapping_type"`
	ScoreCategory    string               `json:"score_category,omitempty"`
	ScoreValue       string               `json:"score_value,omitempty"`
	Alerts           []rules.ProductAlert `json:"alerts,omitempty"`
	References       []string             `json:"references,omitempty"`
}

// Revoked says a technique ID is revoked or deprecated, and what replaced it.
type Revoked struct {
	ReplacedBy []string `json:"replaced_by"`
	Deprecated bool     `json:"deprecated,omitempty"`
}

// Technique is the coverage of one ATT&CK technique or sub-technique.
type Technique struct {
	ID      string   `json:"id"`
	Name    string   `json:"name,omitempty"`
	Parent  string   `json:"parent,omitempty"`
	Tactics []string `json:"tactics,omitempty"`
	// Rules name this ID (or a revoked ID it replaced; see RuleRef.Via).
	Rules        []RuleRef `json:"rules"`
	EnabledRules int       `json:"enabled_rules"`
	// Controls and Detections are the loaded CTID mappings of this ID.
	Controls   []MappingRef `json:"controls"`
	Detections []MappingRef `json:"detections"`
	Related    []MappingRef `json:"related,omitempty"`
	// ParentRules name only the parent technique, none of its sub-techniques; they may
	// cover this sub-technique too. ParentControls and ParentDetections are counts of the
	// parent's mappings.
	ParentRules      []RuleRef `json:"parent_rules,omitempty"`
	ParentControls   int       `json:"parent_controls,omitempty"`
	ParentDetections int       `json:"parent_detections,omitempty"`
	// Subtechniques seen in rules, mappings or alerts, and how many distinct rules name
	// any of them (for a technique).
	Subtechniques     []string `json:"subtechniques,omitempty"`
	SubtechniqueRules int      `json:"subtechnique_rules,omitempty"`
	// RollupRules is the number of distinct rules naming this technique or any of its
	// sub-techniques (for a technique; equal to the direct count for a sub-technique).
	RollupRules int `json:"rollup_rules"`
	// Revoked is set when this ID is revoked or deprecated.
	Revoked *Revoked `json:"revoked,omitempty"`
	// RevokedIDs are revoked IDs named by rules that were counted here as the replacement.
	RevokedIDs []string `json:"revoked_ids,omitempty"`
	// Alerts is the number of alerts carrying the technique; nil when not counted.
	Alerts *int64   `json:"alerts,omitempty"`
	Gaps   []string `json:"gaps,omitempty"`
}

// Report is a coverage audit.
type Report struct {
	RunID          string    `json:"run_id"`
	GeneratedAt    time.Time `json:"generated_at"`
	RulesetVersion string    `json:"ruleset_version,omitempty"`
	RulesetHash    string    `json:"ruleset_hash,omitempty"`
	Files          int       `json:"files"`
	Rules          int       `json:"rules"`
	// RulesWithoutTechnique counts rules that name no ATT&CK technique.
	RulesWithoutTechnique int            `json:"rules_without_technique"`
	RulesBySource         map[Format]int `json:"rules_by_source"`
	AlertsCounted         bool           `json:"alerts_counted"`
	AlertsSince           string         `json:"alerts_since,omitempty"`
	Techniques            []*Technique   `json:"techniques"`
	Errors                []Issue        `json:"errors,omitempty"`
	Skipped               []Issue        `json:"skipped,omitempty"`
	Warnings              []Issue        `json:"warnings,omitempty"`
}

// BuildOptions are the inputs of Build besides the rules.
type BuildOptions struct {
	// Ruleset gives controls, detections and the revocation table; may be nil.
	Ruleset *rules.Ruleset
	// Alerts are alert counts per technique ID; nil when alerts were not counted.
	Alerts      map[string]int64
	AlertsSince string
	RunID       string
	Now         time.Time
	// OnlyRuleTechniques leaves out techniques that only the ruleset or alerts name.
	OnlyRuleTechniques bool
}

// Build joins a scan with the ruleset (and alert counts) into a Report.
func Build(scan *ScanResult, opts BuildOptions) *Report {
	rep := &Report{
		RunID: opts.RunID, GeneratedAt: opts.Now.UTC(),
		Files: scan.Files, Rules: len(scan.Rules), RulesBySource: map[Format]int{},
		AlertsCounted: opts.Alerts != nil, AlertsSince: opts.AlertsSince,
		Errors: scan.Errors, Skipped: scan.Skipped, Warnings: scan.Warnings,
	}
	var tables *rules.Tables
	if rs := opts.Ruleset; rs != nil {
		rep.RulesetVersion, rep.RulesetHash, tables = rs.Version(), rs.Hash(), rs.Tables()
	}
	byID := map[string]*Technique{}
	get := func(id string) *Technique {
		t := byID[id]
		if t == nil {
			t = &Technique{ID: id, Parent: rules.Parent(id), Rules: []RuleRef{}, Controls: []MappingRef{}, Detections: []MappingRef{}}
			byID[id] = t
		}
		return t
	}
	seen := map[string]map[string]bool{} // technique -> rule key
	addRule := func(t *Technique, r *Rule, via string) {
		k := r.key()
		if seen[t.ID] == nil {
			seen[t.ID] = map[string]bool{}
		}
		if seen[t.ID][k] {
			return
		}
		seen[t.ID][k] = true
		t.Rules = append(t.Rules, ref(r, via))
		if r.Enabled != nil && *r.Enabled {
			t.EnabledRules++
		}
	}
	for i := range scan.Rules {
		r := &scan.Rules[i]
		rep.RulesBySource[r.Format]++
		if len(r.Techniques) == 0 {
			rep.RulesWithoutTechnique++
		}
		for _, id := range r.Techniques {
			t := get(id)
			addRule(t, r, "")
			if n := r.Names[id]; n != "" && t.Name == "" {
				t.Name = n
			}
			t.Tactics = mergeStrings(t.Tactics, r.tacticsOf(id)...)
			if tables == nil {
				continue
			}
			if rev, ok := tables.Revoked(id); ok {
				t.Revoked = &Revoked{ReplacedBy: rev.ReplacedBy, Deprecated: rev.Deprecated}
				if t.Name == "" {
					t.Name = rev.Name
				}
				for _, to := range rev.ReplacedBy {
					nt := get(to)
					addRule(nt, r, id)
					nt.RevokedIDs = mergeStrings(nt.RevokedIDs, id)
				}
			}
		}
	}
	if !opts.OnlyRuleTechniques {
		if rs := opts.Ruleset; rs != nil {
			for _, id := range rs.Techniques() {
				get(id)
			}
		}
		for id := range opts.Alerts {
			get(id)
		}
	}
	// Parents and sub-techniques seen anywhere, so relations can be filled both ways; a
	// sub-technique's parent always has a row, for its roll-up.
	var parents []string
	for id := range byID {
		if p := rules.Parent(id); p != "" {
			parents = append(parents, p)
		}
	}
	for _, p := range parents {
		get(p)
	}
	for id := range byID {
		if p := rules.Parent(id); p != "" {
			if pt, ok := byID[p]; ok {
				pt.Subtechniques = mergeStrings(pt.Subtechniques, id)
			}
		}
	}
	// Rules per parent that name none of its sub-techniques.
	parentOnly := map[string][]RuleRef{}
	for i := range scan.Rules {
		r := &scan.Rules[i]
		for _, id := range r.Techniques {
			if rules.Parent(id) != "" {
				continue
			}
			namesSub := false
			for _, x := range r.Techniques {
				if rules.Parent(x) == id {
					namesSub = true
					break
				}
			}
			if !namesSub {
				parentOnly[id] = append(parentOnly[id], ref(r, ""))
			}
		}
	}
	for _, t := range byID {
		if opts.Ruleset != nil {
			for _, m := range opts.Ruleset.Mappings(t.ID) {
				mr := mappingRef(m)
				switch m.Kind {
				case rules.KindControl:
					t.Controls = append(t.Controls, mr)
				case rules.KindDetection:
					t.Detections = append(t.Detections, mr)
				default:
					t.Related = append(t.Related, mr)
				}
				if t.Name == "" {
					t.Name = m.TechniqueName
				}
			}
			if t.Parent != "" {
				for _, m := range opts.Ruleset.Mappings(t.Parent) {
					switch m.Kind {
					case rules.KindControl:
						t.ParentControls++
					case rules.KindDetection:
						t.ParentDetections++
					}
				}
			}
			if t.Revoked == nil && tables != nil {
				if rev, ok := tables.Revoked(t.ID); ok {
					t.Revoked = &Revoked{ReplacedBy: rev.ReplacedBy, Deprecated: rev.Deprecated}
				}
			}
		}
		if t.Parent != "" {
			t.ParentRules = parentOnly[t.Parent]
		}
		sort.Strings(t.Subtechniques)
		subs, all := map[string]bool{}, map[string]bool{}
		for _, r := range t.Rules {
			all[refKey(r)] = true
		}
		for _, s := range t.Subtechniques {
			for _, r := range byID[s].Rules {
				if r.Via == "" {
					subs[refKey(r)] = true
					all[refKey(r)] = true
				}
			}
		}
		t.SubtechniqueRules, t.RollupRules = len(subs), len(all)
		if opts.Alerts != nil {
			n := opts.Alerts[t.ID]
			t.Alerts = &n
		}
		t.Gaps = gaps(t)
	}
	for _, t := range byID {
		rep.Techniques = append(rep.Techniques, t)
	}
	sort.Slice(rep.Techniques, func(i, j int) bool { return techLess(rep.Techniques[i].ID, rep.Techniques[j].ID) })
	return rep
}

func gaps(t *Technique) []string {
	var g []string
	direct := 0
	for _, r := range t.Rules {
		if r.Via == "" {
			direct++
		}
	}
	if len(t.Rules) == 0 && (len(t.Controls) > 0 || len(t.Detections) > 0) {
		g = append(g, GapNoRules)
	}
	if len(t.Rules) > 0 && len(t.Detections) == 0 && t.Revoked == nil {
		g = append(g, GapNoProductDetection)
	}
	if t.Revoked != nil && direct > 0 {
		g = append(g, GapRevokedID)
	}
	if t.Alerts != nil {
		if *t.Alerts == 0 && len(t.Rules) > 0 {
			g = append(g, GapNoAlerts)
		}
		if *t.Alerts > 0 && len(t.Rules) == 0 {
			g = append(g, GapAlertsWithoutRules)
		}
	}
	return g
}

// techLess orders T1021 before T1021.001 before T1022.
func techLess(a, b string) bool { return a < b }

func refKey(r RuleRef) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d", r.Source, r.ID, r.Path, r.Line)
}

func ref(r *Rule, via string) RuleRef {
	return RuleRef{Source: r.Format, ID: r.ID, Name: r.Name, Enabled: r.Enabled, Path: r.Path, Line: r.Line, Via: via}
}

func mappingRef(m *rules.Mapping) MappingRef {
	mr := MappingRef{
		CapabilityID: m.CapabilityID, Capability: m.Capability, MappingType: m.MappingType,
		ScoreCategory: m.ScoreCategory, ScoreValue: m.ScoreValue, Alerts: m.Alerts, References: m.References,
	}
	if m.Source != nil {
		mr.Framework, mr.FrameworkVersion, mr.AttackVersion = m.Source.Framework, m.Source.FrameworkVersion, m.Source.AttackVersion
	}
	return mr
}

func mergeStrings(dst []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, x := range dst {
			if x == a {
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, a)
		}
	}
	return dst
}

// RuleCount is the number of rules counted for the technique (including rules naming a
// revoked ID it replaced).
func (t *Technique) RuleCount() int { return len(t.Rules) }

// DirectRules returns the rules that name this ID itself.
func (t *Technique) DirectRules() []RuleRef {
	var out []RuleRef
	for _, r := range t.Rules {
		if r.Via == "" {
			out = append(out, r)
		}
	}
	return out
}

// Technique returns the entry of one ID, or nil.
func (r *Report) Technique(id string) *Technique {
	id = rules.NormalizeTechniqueID(id)
	i := sort.Search(len(r.Techniques), func(i int) bool { return !techLess(r.Techniques[i].ID, id) })
	if i < len(r.Techniques) && r.Techniques[i].ID == id {
		return r.Techniques[i]
	}
	return nil
}

// WithGaps returns the techniques that have at least one gap.
func (r *Report) WithGaps() []*Technique {
	var out []*Technique
	for _, t := range r.Techniques {
		if len(t.Gaps) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// capabilityIDs lists the capability IDs of mapping refs for compact outputs.
func capabilityIDs(ms []MappingRef) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.CapabilityID)
	}
	return out
}

// release names the framework release of a mapping: "nist_800_53 rev5".
func (m MappingRef) release() string { return m.Framework + " " + m.FrameworkVersion }

// detectionLabel is a product detection for a reader: release, product, mapping type and
// score ("aws 12/12/2024: AWS Network Firewall (technique_scores protect/partial)"); the
// score category says whether the product protects, detects or responds.
func detectionLabel(m MappingRef) string {
	v := fmt.Sprintf("%s: %s (%s", m.release(), m.Capability, m.MappingType)
	if m.ScoreCategory != "" || m.ScoreValue != "" {
		v += " " + joinNonEmpty("/", m.ScoreCategory, m.ScoreValue)
	}
	return v + ")"
}

// controlsByRelease lists control IDs per framework release, in the given order:
// "nist_800_53 rev4: AC-2, AC-3; nist_800_53 rev5: AC-2" (rev4 AC-2 is not rev5 AC-2).
func controlsByRelease(ms []MappingRef) string {
	var releases []string
	ids := map[string][]string{}
	for _, m := range ms {
		r := m.release()
		if ids[r] == nil {
			releases = append(releases, r)
		}
		ids[r] = append(ids[r], m.CapabilityID)
	}
	parts := make([]string, len(releases))
	for i, r := range releases {
		parts[i] = r + ": " + strings.Join(ids[r], ", ")
	}
	return strings.Join(parts, "; ")
}

func joinNonEmpty(sep string, parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, sep)
}
