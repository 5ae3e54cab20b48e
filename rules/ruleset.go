package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
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
	// Files lists every release given to Build, dropped ones included.
	Files []*Source
	// Dropped lists releases that a newer release of the same framework replaced.
	Dropped []*Source
	// Skipped counts rows skipped, by reason (see the Skip* constants), over all files.
	Skipped map[string]int
	// SkippedByFile counts skipped rows per file (Source.Path) and reason.
	SkippedByFile map[string]map[string]int
	// Unknown lists values kept as published that the tables do not know
	// (mapping types, score values, score categories), with where they were first seen.
	Unknown []string
	// Conflicts lists mappings published by several releases that disagree.
	Conflicts []string
	// Revoked lists rows published for a revoked or deprecated technique ID, moved to
	// its replacement (see tables/revoked.yaml).
	Revoked []string
	// Duplicates counts rows identical to an earlier row of the same release (dropped).
	Duplicates int
	// Merged counts rows merged into an earlier row of the same release for the same
	// technique, capability and score category (comments and references joined,
	// highest score kept).
	Merged int
	// Mappings is the number of mappings in the ruleset.
	Mappings int
}

// Ruleset is the read-only index technique -> mappings. Safe for concurrent use.
type Ruleset struct {
	version  string
	hash     string
	sources  []*Source
	tables   *Tables
	byTech   map[string][]*Mapping
	names    map[string]string
	report   Report
	allTechs []string
}

// Version returns the ruleset's label.
func (r *Ruleset) Version() string { return r.version }

// Hash returns a SHA-256 over the ruleset's normalized content; it changes whenever
// any mapping, alias or revocation that affects enrichment changes. Where the files
// were loaded from does not count.
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

// ParentMappings returns, for a sub-technique, its parent's ID and the parent's mappings,
// which an alert for the sub-technique may inherit (mark them inherited; every
// sub-technique row of a CTID file names that parent in RelatedScore). It returns
// "", nil for a technique that is not a sub-technique.
func (r *Ruleset) ParentMappings(id string) (parent string, ms []*Mapping) {
	p := Parent(id)
	if p == "" {
		return "", nil
	}
	return p, r.byTech[p]
}

// Name returns the ATT&CK name of a technique as the mapping files give it, or "".
func (r *Ruleset) Name(id string) string { return r.names[id] }

// Techniques returns every technique ID that has mappings, sorted.
func (r *Ruleset) Techniques() []string { return r.allTechs }

// Len returns the number of mappings.
func (r *Ruleset) Len() int { return r.report.Mappings }

// mappingKey is what makes two rows one mapping. A control is one thing within a framework
// line (NIST rev4 AC-2 is not rev5 AC-2); a product is one thing whatever file publishes it,
// scored separately per category (protect, detect, respond); any other relation is one per
// line and mapping type (a KEV CVE can be both the exploitation technique and the impact).
type mappingKey struct {
	tech, kind, line, capability, category, mtype string
}

func keyOf(m *Mapping) mappingKey {
	k := mappingKey{tech: m.Technique, kind: string(m.Kind), capability: strings.ToLower(m.CapabilityID)}
	switch m.Kind {
	case KindDetection:
		k.category = m.ScoreCategory
	case KindControl:
		k.line = line(m.Source)
	default:
		k.line = line(m.Source)
		k.mtype = m.MappingType
	}
	return k
}

// Build normalizes and merges mapping files into a Ruleset.
func Build(files []*File, tables *Tables, opts Options) (*Ruleset, error) {
	rep := Report{Skipped: map[string]int{}, SkippedByFile: map[string]map[string]int{}}
	srcs := make(map[*File]*Source, len(files))
	for _, f := range files {
		src := f.Source
		srcs[f] = &src
		rep.Files = append(rep.Files, &src)
		for reason, n := range src.Skipped {
			rep.addSkip(src.Path, reason, n)
		}
	}
	files, rep.Dropped = selectReleases(files, opts.KeepAllReleases)

	byKey := map[mappingKey]*Mapping{}
	var order []mappingKey
	seenUnknown := map[string]bool{}
	unknown := func(key, msg string) {
		if !seenUnknown[key] {
			seenUnknown[key] = true
			rep.Unknown = append(rep.Unknown, msg)
		}
	}
	revoked := map[string]int{}
	var revokedOrder []string
	names := map[string]string{}
	for _, f := range files {
		src := srcs[f]
		for i, fm := range f.Mappings {
			row := fm.Row
			if row == 0 {
				row = i + 1
			}
			mt := strings.ToLower(strings.TrimSpace(fm.MappingType))
			switch {
			case mt == "" || mt == "null":
				rep.addSkip(src.Path, SkipNullMappingType, 1)
				continue
			case mt == "non_mappable":
				rep.addSkip(src.Path, SkipNonMappable, 1)
				continue
			case strings.TrimSpace(fm.CapabilityID) == "":
				rep.addSkip(src.Path, SkipNoCapability, 1)
				continue
			}
			m, known := normalize(src, fm, tables)
			if !known {
				unknown("mt\x00"+src.Path+"\x00"+mt, fmt.Sprintf("%s: row %d: unknown mapping_type %q (kept, filed as %s)", src.Path, row, fm.MappingType, KindRelated))
			}
			if v := m.ScoreValue; v != "" && v != "minimal" && v != "partial" && v != "significant" {
				unknown("sv\x00"+src.Path+"\x00"+v, fmt.Sprintf("%s: row %d: unknown score_value %q (kept)", src.Path, row, v))
			}
			if c := m.ScoreCategory; c != "" && c != "protect" && c != "detect" && c != "respond" {
				unknown("sc\x00"+src.Path+"\x00"+c, fmt.Sprintf("%s: row %d: unknown score_category %q (kept)", src.Path, row, c))
			}
			if m.TechniqueName != "" && names[m.Technique] == "" {
				names[m.Technique] = m.TechniqueName
			}
			targets := []string{m.Technique}
			if r, ok := tables.Revoked(m.Technique); ok && len(r.ReplacedBy) > 0 {
				k := fmt.Sprintf("%s: %s (%s) is revoked or deprecated; mapped to %s", src.Path, m.Technique, r.Name, strings.Join(r.ReplacedBy, ", "))
				if revoked[k] == 0 {
					revokedOrder = append(revokedOrder, k)
				}
				revoked[k]++
				targets = r.ReplacedBy
			}
			orig, base := m.Technique, *m
			for ti, target := range targets {
				mm := m
				if ti > 0 {
					c := base
					mm = &c
				}
				if target != orig {
					// CTID sets related_score to the parent of a sub-technique, and only then.
					mm.SourceTechnique, mm.Technique, mm.TechniqueName, mm.RelatedScore = orig, target, "", Parent(target)
				}
				k := keyOf(mm)
				prev, dup := byKey[k]
				if !dup {
					byKey[k] = mm
					order = append(order, k)
					continue
				}
				if prev.Source == mm.Source {
					if mergeSameRelease(prev, mm) {
						rep.Merged++
					} else {
						rep.Duplicates++
					}
					continue
				}
				newer, older := mm, prev
				if !releaseNewer(mm.Source, prev.Source) {
					newer, older = prev, mm
				}
				if c := conflict(newer, older); c != "" {
					rep.Conflicts = append(rep.Conflicts, c)
				}
				newer.AlsoIn = appendSources(newer.AlsoIn, older.Source)
				newer.AlsoIn = appendSources(newer.AlsoIn, older.AlsoIn...)
				older.AlsoIn = nil
				if newer.Comments == "" {
					newer.Comments = older.Comments
				}
				newer.Alerts = mergeAlerts(newer.Alerts, older.Alerts)
				newer.Queries = mergeStrings(newer.Queries, older.Queries)
				newer.Events = mergeEvents(newer.Events, older.Events)
				byKey[k] = newer
			}
		}
	}
	for _, k := range revokedOrder {
		if n := revoked[k]; n > 1 {
			k = fmt.Sprintf("%s (%d rows)", k, n)
		}
		rep.Revoked = append(rep.Revoked, k)
	}

	rs := &Ruleset{version: opts.Version, tables: tables, byTech: map[string][]*Mapping{}, names: names, report: rep}
	for _, f := range files {
		rs.sources = append(rs.sources, srcs[f])
	}
	for _, k := range order {
		m := byKey[k]
		if m.TechniqueName == "" {
			m.TechniqueName = names[m.Technique]
		}
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

func (r *Report) addSkip(file, reason string, n int) {
	r.Skipped[reason] += n
	m := r.SkippedByFile[file]
	if m == nil {
		m = map[string]int{}
		r.SkippedByFile[file] = m
	}
	m[reason] += n
}

var scoreRank = map[string]int{"minimal": 1, "partial": 2, "significant": 3}

// mergeSameRelease folds row b into a, both from one release with the same key. It
// reports false when b adds nothing (an exact duplicate).
func mergeSameRelease(a, b *Mapping) bool {
	changed := false
	if scoreRank[b.ScoreValue] > scoreRank[a.ScoreValue] {
		a.ScoreValue = b.ScoreValue
		changed = true
	}
	if b.Comments != "" && !strings.Contains(a.Comments, b.Comments) {
		if a.Comments != "" {
			a.Comments += "\n\n"
		}
		a.Comments += b.Comments
		changed = true
	}
	n := len(a.References)
	a.References = mergeStrings(a.References, b.References)
	changed = changed || len(a.References) != n
	a.Alerts = mergeAlerts(a.Alerts, b.Alerts)
	a.Queries = mergeStrings(a.Queries, b.Queries)
	a.Events = mergeEvents(a.Events, b.Events)
	return changed
}

func appendSources(list []*Source, add ...*Source) []*Source {
next:
	for _, s := range add {
		for _, x := range list {
			if x == s {
				continue next
			}
		}
		list = append(list, s)
	}
	return list
}

func mergeStrings(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(slices.Clip(a), x)
		}
	}
	return a
}

func mergeEvents(a, b []WindowsEvent) []WindowsEvent {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(slices.Clip(a), x)
		}
	}
	return a
}

// normalize returns the canonical form of one row, and whether the tables know its mapping type.
func normalize(src *Source, fm FileMapping, t *Tables) (*Mapping, bool) {
	mt, kind, known := t.MappingType(fm.MappingType)
	m := &Mapping{
		Technique:       NormalizeTechniqueID(fm.Technique),
		TechniqueName:   strings.TrimSpace(fm.TechniqueName),
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
	return m, known
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

// NewerThan reports whether release s is newer than o (see releaseNewer).
func (s *Source) NewerThan(o *Source) bool { return releaseNewer(s, o) }

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
			a = append(slices.Clip(a), x)
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
	if a.CapabilityID != b.CapabilityID {
		return controlLess(a.CapabilityID, b.CapabilityID)
	}
	if a.ScoreCategory != b.ScoreCategory {
		return categoryRank(a.ScoreCategory) < categoryRank(b.ScoreCategory)
	}
	return a.MappingType < b.MappingType
}

func categoryRank(c string) int {
	switch c {
	case "protect":
		return 0
	case "detect":
		return 1
	case "respond":
		return 2
	}
	return 3
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

// hashSource is the part of a Source that identifies content (not where it was read from).
type hashSource struct {
	Framework, FrameworkVersion, AttackVersion, MappingVersion, Domain, CreationDate, LastUpdate string
}

func hashOf(s *Source) hashSource {
	return hashSource{s.Framework, s.FrameworkVersion, s.AttackVersion, s.MappingVersion, s.Domain, s.CreationDate, s.LastUpdate}
}

func (r *Ruleset) computeHash() (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	type view struct {
		M      Mapping
		Source hashSource
		AlsoIn []hashSource
	}
	for _, id := range r.allTechs {
		if err := enc.Encode(id); err != nil {
			return "", err
		}
		for _, m := range r.byTech[id] {
			v := view{M: *m, Source: hashOf(m.Source)}
			v.M.Source, v.M.AlsoIn = nil, nil
			for _, s := range m.AlsoIn {
				v.AlsoIn = append(v.AlsoIn, hashOf(s))
			}
			if err := enc.Encode(v); err != nil {
				return "", err
			}
		}
	}
	if err := enc.Encode(r.tables.Revocations()); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
