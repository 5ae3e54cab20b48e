package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Options control how mapping files are merged into a Ruleset.
type Options struct {
	// Version labels the ruleset on alerts (<root>.ruleset.version). The hash identifies it.
	Version string
	// KeepAllReleases keeps every loaded release of a framework. By default, when two
	// releases of one framework are loaded, only the newer one is used.
	KeepAllReleases bool
}

// Report says what Build skipped, merged and could not place.
type Report struct {
	Files []*Source
	// Dropped lists releases that a newer release of the same framework replaced.
	Dropped []*Source
	// Skipped counts rows skipped, by reason (non_mappable, no mapping type, no capability).
	Skipped map[string]int
	// Unknown lists values kept as published that the tables do not know
	// (mapping types, score values), with where they were seen.
	Unknown []string
	// Conflicts lists mappings published by several releases that disagree.
	Conflicts []string
	Mappings  int
}

// Ruleset is the read-only index technique -> mappings. Safe for concurrent use.
type Ruleset struct {
	version  string
	hash     string
	sources  []*Source
	tables   *Tables
	byTech   map[string][]*Mapping
	report   Report
	allTechs []string
}

// Version returns the ruleset's label.
func (r *Ruleset) Version() string { return r.version }

// Hash returns a SHA-256 over the ruleset's normalized content; it changes whenever
// any mapping, alias or revocation that affects enrichment changes.
func (r *Ruleset) Hash() string { return r.hash }

// Sources returns the framework releases in use.
func (r *Ruleset) Sources() []*Source { return r.sources }

// Tables returns the normalization tables.
func (r *Ruleset) Tables() *Tables { return r.tables }

// Report returns what Build skipped, merged and could not place.
func (r *Ruleset) Report() Report { return r.report }

// Mappings returns the mappings of one technique ID (normalized), sorted by kind,
// framework and capability. The slice must not be modified.
func (r *Ruleset) Mappings(id string) []*Mapping { return r.byTech[id] }

// Techniques returns every technique ID that has mappings, sorted.
func (r *Ruleset) Techniques() []string { return r.allTechs }

// Len returns the number of mappings.
func (r *Ruleset) Len() int { return r.report.Mappings }

// Build normalizes and merges mapping files into a Ruleset.
func Build(files []*File, tables *Tables, opts Options) (*Ruleset, error) {
	rep := Report{Skipped: map[string]int{}}
	for _, f := range files {
		src := f.Source
		rep.Files = append(rep.Files, &src)
	}
	files, rep.Dropped = selectReleases(files, opts.KeepAllReleases)

	type key struct {
		tech, kind, line, capability string
	}
	byKey := map[key]*Mapping{}
	var order []key
	unknown := map[string]bool{}
	for _, f := range files {
		src := f.Source
		for i, fm := range f.Mappings {
			mt := strings.ToLower(strings.TrimSpace(fm.MappingType))
			switch {
			case mt == "" || mt == "null":
				rep.Skipped["no mapping type"]++
				continue
			case mt == "non_mappable":
				rep.Skipped["non_mappable"]++
				continue
			case strings.TrimSpace(fm.CapabilityID) == "":
				rep.Skipped["no capability"]++
				continue
			}
			m := normalize(&src, fm, tables)
			if _, _, known := tables.MappingType(fm.MappingType); !known {
				u := fmt.Sprintf("%s: mapping %d: unknown mapping_type %q (kept as %s)", src.Path, i+1, fm.MappingType, KindRelated)
				if !unknown["mt"+src.Path+mt] {
					unknown["mt"+src.Path+mt] = true
					rep.Unknown = append(rep.Unknown, u)
				}
			}
			if v := m.ScoreValue; v != "" && v != "minimal" && v != "partial" && v != "significant" {
				if !unknown["sv"+src.Path+v] {
					unknown["sv"+src.Path+v] = true
					rep.Unknown = append(rep.Unknown, fmt.Sprintf("%s: mapping %d: unknown score_value %q (kept)", src.Path, i+1, v))
				}
			}
			if c := m.ScoreCategory; c != "" && c != "protect" && c != "detect" && c != "respond" {
				if !unknown["sc"+src.Path+c] {
					unknown["sc"+src.Path+c] = true
					rep.Unknown = append(rep.Unknown, fmt.Sprintf("%s: mapping %d: unknown score_category %q (kept)", src.Path, i+1, c))
				}
			}
			k := key{tech: m.Technique, kind: string(m.Kind), capability: strings.ToLower(m.CapabilityID)}
			if m.Kind != KindDetection {
				// A control is one thing within a framework line (NIST rev4 AC-2 is not rev5 AC-2);
				// a product is one thing whatever file publishes it.
				k.line = line(&src)
			}
			prev, dup := byKey[k]
			if !dup {
				byKey[k] = m
				order = append(order, k)
				continue
			}
			newer, older := m, prev
			if !releaseNewer(m.Source, prev.Source) {
				newer, older = prev, m
			}
			if c := conflict(newer, older); c != "" {
				rep.Conflicts = append(rep.Conflicts, c)
			}
			newer.AlsoIn = append(newer.AlsoIn, older.Source)
			newer.AlsoIn = append(newer.AlsoIn, older.AlsoIn...)
			older.AlsoIn = nil
			if newer.Comments == "" {
				newer.Comments = older.Comments
			}
			newer.Alerts = mergeAlerts(newer.Alerts, older.Alerts)
			byKey[k] = newer
		}
	}

	rs := &Ruleset{version: opts.Version, tables: tables, byTech: map[string][]*Mapping{}, report: rep}
	for _, f := range files {
		s := f.Source
		rs.sources = append(rs.sources, &s)
	}
	for _, k := range order {
		m := byKey[k]
		rs.byTech[m.Technique] = append(rs.byTech[m.Technique], m)
	}
	for id, ms := range rs.byTech {
		sort.SliceStable(ms, func(i, j int) bool { return less(ms[i], ms[j]) })
		rs.allTechs = append(rs.allTechs, id)
		rs.report.Mappings += len(ms)
	}
	sort.Strings(rs.allTechs)
	if rs.version == "" {
		rs.version = "custom"
	}
	h, err := rs.computeHash()
	if err != nil {
		return nil, err
	}
	rs.hash = h
	return rs, nil
}

func normalize(src *Source, fm FileMapping, t *Tables) *Mapping {
	mt, kind, _ := t.MappingType(fm.MappingType)
	m := &Mapping{
		Technique:       NormalizeTechniqueID(fm.Technique),
		TechniqueName:   fm.TechniqueName,
		CapabilityID:    NormalizeControlID(src.Framework, fm.CapabilityID),
		Capability:      strings.TrimSpace(fm.Capability),
		CapabilityGroup: fm.CapabilityGroup,
		Kind:            kind,
		MappingType:     mt,
		ScoreCategory:   strings.ToLower(strings.TrimSpace(fm.ScoreCategory)),
		ScoreValue:      strings.ToLower(strings.TrimSpace(fm.ScoreValue)),
		RelatedScore:    NormalizeTechniqueID(fm.RelatedScore),
		Comments:        strings.TrimSpace(fm.Comments),
		References:      fm.References,
		Alerts:          fm.Alerts,
		Queries:         fm.Queries,
		Events:          fm.Events,
		Source:          src,
	}
	if to, name, ok := t.Alias(src.Framework, m.CapabilityID); ok {
		m.CapabilityID = to
		if name != "" {
			m.Capability = name
		}
	}
	if m.CapabilityID != fm.CapabilityID {
		m.SourceCapabilityID = fm.CapabilityID
	}
	if mt != strings.ToLower(strings.TrimSpace(fm.MappingType)) {
		m.SourceMappingType = fm.MappingType
	}
	if len(m.Alerts) == 0 && len(m.Queries) == 0 && len(m.Events) == 0 {
		m.Alerts, m.Queries, m.Events = ExtractFromComments(m.Comments)
	}
	return m
}

// line is the identity of a framework across its releases. NIST revisions are
// different catalogs; every other framework's versions are releases of one line.
func line(s *Source) string {
	if strings.HasPrefix(s.Framework, "nist") {
		return s.Framework + "/" + s.FrameworkVersion
	}
	return s.Framework
}

// selectReleases keeps the newest release of each framework line, unless keepAll.
func selectReleases(files []*File, keepAll bool) (kept []*File, dropped []*Source) {
	if keepAll {
		return files, nil
	}
	newest := map[string]*File{}
	for _, f := range files {
		l := line(&f.Source)
		if cur, ok := newest[l]; !ok || releaseNewer(&f.Source, &cur.Source) {
			newest[l] = f
		}
	}
	for _, f := range files {
		if newest[line(&f.Source)] == f {
			kept = append(kept, f)
		} else {
			s := f.Source
			dropped = append(dropped, &s)
		}
	}
	return kept, dropped
}

// releaseNewer reports whether release a is newer than b: by ATT&CK version, then by the
// framework version read as a date or a version number, then by last update.
func releaseNewer(a, b *Source) bool {
	if c := compareVersions(a.AttackVersion, b.AttackVersion); c != 0 {
		return c > 0
	}
	if c := compareVersions(dateKey(a.FrameworkVersion), dateKey(b.FrameworkVersion)); c != 0 {
		return c > 0
	}
	return compareVersions(dateKey(a.LastUpdate), dateKey(b.LastUpdate)) > 0
}

// dateKey turns MM/DD/YYYY into YYYY.MM.DD so it compares as a version; other strings pass through.
func dateKey(s string) string {
	p := strings.Split(s, "/")
	if len(p) == 3 && len(p[2]) == 4 {
		return p[2] + "." + p[0] + "." + p[1]
	}
	return s
}

// compareVersions compares dotted numeric versions ("16.1" > "8.2"); non-numeric
// parts compare as strings.
func compareVersions(a, b string) int {
	pa := strings.FieldsFunc(strings.TrimPrefix(strings.ToLower(a), "v"), func(r rune) bool { return r == '.' || r == '-' })
	pb := strings.FieldsFunc(strings.TrimPrefix(strings.ToLower(b), "v"), func(r rune) bool { return r == '.' || r == '-' })
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, ex := strconv.Atoi(x)
		ny, ey := strconv.Atoi(y)
		switch {
		case ex == nil && ey == nil:
			if nx != ny {
				if nx < ny {
					return -1
				}
				return 1
			}
		case x != y:
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func conflict(newer, older *Mapping) string {
	var diffs []string
	if newer.MappingType != older.MappingType {
		diffs = append(diffs, fmt.Sprintf("mapping_type %s vs %s", newer.MappingType, older.MappingType))
	}
	if newer.ScoreCategory != older.ScoreCategory {
		diffs = append(diffs, fmt.Sprintf("score_category %s vs %s", newer.ScoreCategory, older.ScoreCategory))
	}
	if newer.ScoreValue != older.ScoreValue {
		diffs = append(diffs, fmt.Sprintf("score_value %s vs %s", newer.ScoreValue, older.ScoreValue))
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s: %s (%s) and %s (%s) disagree: %s; using the newer",
		newer.Technique, newer.CapabilityID, label(newer.Source), newer.Source.Path,
		label(older.Source), older.Source.Path, strings.Join(diffs, ", "))
}

// label is a short human name for a release: "azure 06/29/2021 (ATT&CK 8.2)".
func label(s *Source) string {
	return fmt.Sprintf("%s %s (ATT&CK %s)", s.Framework, s.FrameworkVersion, s.AttackVersion)
}

// Label is a short human name for a release: "azure 06/29/2021 (ATT&CK 8.2)".
func (s *Source) Label() string { return label(s) }

func mergeAlerts(a, b []ProductAlert) []ProductAlert {
	seen := map[string]bool{}
	for _, x := range a {
		seen[x.ID] = true
	}
	for _, x := range b {
		if !seen[x.ID] {
			a = append(a, x)
			seen[x.ID] = true
		}
	}
	return a
}

func kindRank(k Kind) int {
	switch k {
	case KindControl:
		return 0
	case KindDetection:
		return 1
	}
	return 2
}

func less(a, b *Mapping) bool {
	if ra, rb := kindRank(a.Kind), kindRank(b.Kind); ra != rb {
		return ra < rb
	}
	if a.Source.Framework != b.Source.Framework {
		return a.Source.Framework < b.Source.Framework
	}
	if a.Source.FrameworkVersion != b.Source.FrameworkVersion {
		return a.Source.FrameworkVersion < b.Source.FrameworkVersion
	}
	return controlLess(a.CapabilityID, b.CapabilityID)
}

// controlLess orders AC-2 before AC-17 (numeric within family), others by string.
func controlLess(a, b string) bool {
	fa, na, oka := splitControl(a)
	fb, nb, okb := splitControl(b)
	if oka && okb && fa == fb && na != nb {
		return na < nb
	}
	return a < b
}

func splitControl(s string) (family string, n int, ok bool) {
	i := strings.IndexByte(s, '-')
	if i < 0 {
		return "", 0, false
	}
	j := i + 1
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(s[i+1 : j])
	return s[:i], n, err == nil
}

func (r *Ruleset) computeHash() (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, id := range r.allTechs {
		if err := enc.Encode(id); err != nil {
			return "", err
		}
		for _, m := range r.byTech[id] {
			if err := enc.Encode(m); err != nil {
				return "", err
			}
		}
	}
	revs := r.tables.Revocations()
	sort.Slice(revs, func(i, j int) bool { return revs[i].ID < revs[j].ID })
	if err := enc.Encode(revs); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
