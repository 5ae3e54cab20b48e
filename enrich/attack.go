package enrich

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/rules"
)

// Status values written to <root>.status.
const (
	// StatusEnriched: at least one technique on the alert has mappings.
	StatusEnriched = "enriched"
	// StatusUnmapped: the alert carries technique IDs, none of them mapped.
	StatusUnmapped = "unmapped"
	// StatusNoTechnique: technique fields hold values, none of them a valid technique ID.
	StatusNoTechnique = "no_technique"
)

// The cache of pre-built documents is bounded by entries and by bytes. Real alerts carry a
// few hundred distinct technique sets of a few kilobytes each; crafted alerts can carry
// sets whose document is megabytes (every framework, hundreds of techniques), so the byte
// bound is what keeps memory flat.
const (
	maxCachedTechniqueSets = 2048
	maxCachedBytes         = 32 << 20
)

// AttackStageName is the name of the built-in ATT&CK mapping stage.
const AttackStageName = "attack"

// AttackStage is the built-in stage: it finds ATT&CK IDs on an alert and writes the mapped
// controls, product detections and other mappings under one root object.
//
// The part of the document that depends only on the technique IDs is built once per
// distinct ID set and reused, so a batch of alerts for the same techniques costs one
// extraction and one map lookup per alert.
type AttackStage struct {
	rs      *rules.Ruleset
	fields  []Field
	x       *Extractor
	root    string
	inherit bool
	detail  string
	now     func() time.Time

	mu         sync.RWMutex
	cache      map[string]*staticDoc // technique set -> technique-dependent part of the document
	cacheBytes int                   // keys and documents in cache
}

var _ Stage = (*AttackStage)(nil)

// AttackOptions configure the ATT&CK stage.
type AttackOptions struct {
	Fields        []Field // default DefaultFields
	Root          string  // default "attack_mappings"
	InheritParent bool
	// Detail is DetailCompact (default) or DetailFull.
	Detail string
	Now    func() time.Time // default time.Now
}

// Shapes of the mappings written on an alert (output.detail).
const (
	// DetailCompact writes what an analyst filters and reads: control IDs and names
	// deduplicated across framework releases with the releases that publish them,
	// product detections with their alerts, queries and events, related mappings
	// counted, and every contributing release in <root>.frameworks. Comments, references and
	// the rest of each mapping's provenance are in the mapping detail index, one click
	// away through <root>.details.
	DetailCompact = "compact"
	// DetailFull writes every mapping whole on the alert: comments, references and
	// provenance, one entry per framework release.
	DetailFull = "full"
)

// NewAttackStage returns the ATT&CK stage for a ruleset.
func NewAttackStage(rs *rules.Ruleset, o AttackOptions) *AttackStage {
	if len(o.Fields) == 0 {
		o.Fields = DefaultFields
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Detail == "" {
		o.Detail = DetailCompact
	}
	return &AttackStage{rs: rs, fields: o.Fields, x: NewExtractor(o.Fields), root: o.Root,
		inherit: o.InheritParent, detail: o.Detail, now: o.Now, cache: map[string]*staticDoc{}}
}

// Name implements Stage.
func (s *AttackStage) Name() string { return AttackStageName }

// Namespace implements Stage.
func (s *AttackStage) Namespace() string { return s.root }

// RulesVersion returns the version of the rules, written beside the generation.
func (s *AttackStage) RulesVersion() string { return s.rs.Version() }

// Fingerprint implements Fingerprinter: the rules' content hash and every option that
// changes what the stage writes for the same alert.
func (s *AttackStage) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "rules %s\ninherit %t\nroot %s\ndetail %s\ncompliance %s\n", s.rs.Hash(), s.inherit, s.root, s.detail, strings.Join(ComplianceFields, ","))
	for _, f := range s.fields {
		fmt.Fprintf(h, "field %s %s\n", f.Kind, f.Path)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Ruleset returns the ruleset the stage enriches with.
func (s *AttackStage) Ruleset() *rules.Ruleset { return s.rs }

// TechniqueFields returns the fields the stage reads technique IDs from.
func (s *AttackStage) TechniqueFields() []Field { return s.fields }

// Fields implements Stage: the technique fields.
func (s *AttackStage) Fields() []string {
	out := make([]string, 0, len(s.fields)+len(ComplianceFields))
	for _, f := range s.fields {
		out = append(out, f.Path)
	}
	return append(out, ComplianceFields...)
}

// Enrich implements Stage. It never fails: bad values are skipped and reported on the alert.
func (s *AttackStage) Enrich(_ context.Context, alerts []*Alert) ([]Patch, error) {
	out := make([]Patch, len(alerts))
	now := s.now().UTC().Format(time.RFC3339Nano)
	for i, a := range alerts {
		out[i] = Patch{s.root: s.Document(a.Source, now)}
	}
	return out, nil
}

// Document returns the root object for one alert _source.
func (s *AttackStage) Document(src map[string]any, enrichedAt string) *RootDoc {
	ids, problems := s.x.Extract(src)
	st := s.static(ids)
	return &RootDoc{static: st, EnrichedAt: enrichedAt, Problems: problems, Compliance: complianceCheck(src, st.nist)}
}

// Status returns the status the stage wrote in a document's root object, or "".
func (s *AttackStage) Status(doc map[string]any) string {
	if d, ok := doc[s.root].(*RootDoc); ok {
		return d.Status()
	}
	return ""
}

// static returns the cached, read-only part of the document for a technique ID set.
func (s *AttackStage) static(ids []string) *staticDoc {
	key := strings.Join(ids, ",")
	s.mu.RLock()
	d, ok := s.cache[key]
	s.mu.RUnlock()
	if ok {
		return d
	}
	d = s.build(ids)
	size := len(key) + len(d.json)
	if size > maxCachedBytes/64 {
		return d // too large to keep: built again when seen again
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cached, ok := s.cache[key]; ok { // built meanwhile by another batch
		return cached
	}
	if len(s.cache) >= maxCachedTechniqueSets || s.cacheBytes+size > maxCachedBytes {
		s.cache, s.cacheBytes = map[string]*staticDoc{}, 0
	}
	s.cache[key] = d
	s.cacheBytes += size
	return d
}

// entry is one control, detection or related mapping as written on an alert.
type entry = map[string]any

// chosen is one mapping selected for an alert, with the technique it was found under.
type chosen struct {
	m         *rules.Mapping
	technique string
	inherited bool
}

// build computes the technique-dependent part of the document, pre-encoded as JSON so
// that writing many alerts for the same techniques costs a copy.
func (s *AttackStage) build(found []string) *staticDoc {
	tables := s.rs.Tables()
	var techniques, unmapped, inheritedFrom, detailed []string
	var revoked []map[string]any
	for _, id := range found {
		targets := []string{id}
		if r, ok := tables.Revoked(id); ok {
			revoked = append(revoked, map[string]any{"id": id, "replaced_by": r.ReplacedBy, "deprecated": r.Deprecated})
			targets = r.ReplacedBy
		}
		for _, t := range targets {
			techniques = appendUnique(techniques, t)
		}
	}
	var picked []chosen
	seen := map[string]bool{}
	frameworks := []string{}
	add := func(m *rules.Mapping, technique string, inherited bool) {
		k := string(m.Kind) + "|" + m.Source.Framework + "|" + m.Source.FrameworkVersion + "|" + m.CapabilityID
		if m.Kind == rules.KindDetection {
			// One product may be scored for protect and for detect: both are kept.
			k = string(m.Kind) + "|" + m.CapabilityID + "|" + m.ScoreCategory
		}
		// Every release that maps a capability to the alert's techniques is named, the
		// ones of a capability shown once too: detections list no releases of their own.
		for _, r := range releasesOf(m) {
			frameworks = appendUnique(frameworks, r)
		}
		if seen[k] {
			return
		}
		seen[k] = true
		picked = append(picked, chosen{m, technique, inherited})
	}
	// The most specific mapping of a capability wins: sub-techniques first, then parents,
	// then inherited parents. An alert tagged T1021 and T1021.002 shows Defender for
	// Identity once, with the alerts the T1021.002 mapping names.
	bySpecificity := append([]string(nil), techniques...)
	sort.SliceStable(bySpecificity, func(i, j int) bool {
		return strings.Contains(bySpecificity[i], ".") && !strings.Contains(bySpecificity[j], ".")
	})
	for _, t := range bySpecificity {
		ms := s.rs.Mappings(t)
		if len(ms) == 0 {
			unmapped = append(unmapped, t)
			continue
		}
		detailed = append(detailed, DetailRef(t, s.rs.Hash()))
		for _, m := range ms {
			add(m, t, false)
		}
	}
	if s.inherit {
		for _, t := range techniques {
			p := rules.Parent(t)
			if p == "" || contains(techniques, p) {
				continue
			}
			ms := s.rs.Mappings(p)
			if len(ms) > 0 && !contains(inheritedFrom, p) {
				inheritedFrom = append(inheritedFrom, p)
				detailed = append(detailed, DetailRef(p, s.rs.Hash()))
			}
			for _, m := range ms {
				add(m, p, true)
			}
		}
	}
	status := StatusUnmapped
	if len(picked) > 0 {
		status = StatusEnriched
	}
	hasDetection := false
	for _, c := range picked {
		if c.m.Kind == rules.KindDetection && c.m.ScoreCategory == "detect" {
			hasDetection = true
		}
	}
	if len(found) == 0 {
		status = StatusNoTechnique
	}
	var nist []string
	for _, c := range picked {
		if c.m.Kind == rules.KindControl && c.m.Source.Framework == "nist_800_53" {
			if id := NormalizeNISTControl(c.m.CapabilityID); id != "" {
				nist = appendUnique(nist, id)
			}
		}
	}
	sort.Strings(nist)
	var controls, detections, related []entry
	if s.detail == DetailFull {
		controls, detections, related = fullEntries(picked)
	} else {
		controls, detections, related = compactEntries(picked)
	}
	doc := map[string]any{
		"techniques":          nonNil(techniques),
		"unmapped_techniques": nonNil(unmapped),
		"inherited_from":      nonNil(inheritedFrom),
		"revoked":             nonNilMaps(revoked),
		"controls":            controls,
		"detections":          detections,
		"related":             related,
		"frameworks":          frameworks,
		"has_detection":       hasDetection,
		FieldDetails:          nonNil(detailed),
	}
	d := newStaticDoc(status, doc)
	d.nist = nist
	return d
}

// DetailRef is the reference an alert carries (<root>.details) to the mapping details
// of one technique in one ruleset: the `ref` of their documents in the detail index.
func DetailRef(technique, rulesHash string) string {
	if len(rulesHash) > 12 {
		rulesHash = rulesHash[:12]
	}
	return technique + "@" + rulesHash
}

// releaseLabel names a framework release on alerts: "nist_800_53 rev5".
func releaseLabel(src *rules.Source) string { return src.Framework + " " + src.FrameworkVersion }

// releasesOf labels the release m comes from and the other loaded ones that publish it.
func releasesOf(m *rules.Mapping) []string {
	out := []string{releaseLabel(m.Source)}
	for _, also := range m.AlsoIn {
		out = appendUnique(out, releaseLabel(also))
	}
	return out
}

// fullEntries is the full shape: every mapping whole, one entry per framework release.
func fullEntries(picked []chosen) (controls, detections, related []entry) {
	controls, detections, related = []entry{}, []entry{}, []entry{}
	for _, c := range picked {
		e := entryFor(c.m, c.technique, c.inherited)
		switch c.m.Kind {
		case rules.KindControl:
			controls = append(controls, e)
		case rules.KindDetection:
			detections = append(detections, e)
		default:
			related = append(related, e)
		}
	}
	return controls, detections, related
}

// compactEntries is the compact shape. Controls (and related mappings) are deduplicated
// across the releases of a framework, then grouped by framework, the set of releases that
// publish them and whether they come from the parent technique ("inherited": true):
// {"framework": "nist_800_53", "releases": ["nist_800_53 rev4", "nist_800_53 rev5"],
// "id": ["AC-17", …], "name": ["Remote Access", …]}, id[i] named name[i]. Detections are
// one entry per product and score category, with their alerts, queries and events. No
// free text: comments and references are in the mapping detail index. Related mappings (CISA KEV, VERIS) carry how many there are,
// not what: for T1059 that is 171 CVEs, 3 KB of IDs on every alert with every framework
// loaded (41% of the compact object), and a list no analyst filters an alert by; their
// IDs and names are one click away in the detail index.
func compactEntries(picked []chosen) (controls, detections, related []entry) {
	type capability struct {
		kind      rules.Kind
		framework string
		inherited bool
		id, name  string
		named     *rules.Source // the release the name is from: the newest
		releases  []string
	}
	var caps []*capability
	byKey := map[string]*capability{}
	detections = []entry{}
	for _, c := range picked {
		m := c.m
		if m.Kind == rules.KindDetection {
			detections = append(detections, compactDetection(m, c.inherited))
			continue
		}
		k := string(m.Kind) + "|" + m.Source.Framework + "|" + m.CapabilityID
		x, ok := byKey[k]
		if !ok {
			// A capability mapped to the technique and to its parent is the technique's.
			x = &capability{kind: m.Kind, framework: m.Source.Framework, inherited: c.inherited, id: m.CapabilityID}
			byKey[k] = x
			caps = append(caps, x)
		}
		// Releases rename controls (rev4 "Session Lock" is rev5 "Device Lock"): the
		// newest release's name is the one an analyst searches for.
		if x.named == nil || m.Source.NewerThan(x.named) {
			x.name, x.named = m.Capability, m.Source
		}
		for _, r := range releasesOf(m) {
			x.releases = appendUnique(x.releases, r)
		}
	}
	controls, related = []entry{}, []entry{}
	groups := map[string]entry{}
	for _, x := range caps {
		sort.Strings(x.releases)
		k := fmt.Sprintf("%s|%s|%t|%s", x.kind, x.framework, x.inherited, strings.Join(x.releases, ","))
		g, ok := groups[k]
		if !ok {
			g = entry{"framework": x.framework, "releases": x.releases}
			if x.kind == rules.KindControl {
				g["id"], g["name"] = []string{}, []string{}
			} else {
				g["count"] = 0
			}
			if x.inherited {
				g["inherited"] = true
			}
			groups[k] = g
			if x.kind == rules.KindControl {
				controls = append(controls, g)
			} else {
				related = append(related, g)
			}
		}
		if x.kind != rules.KindControl {
			g["count"] = g["count"].(int) + 1
			continue
		}
		g["id"] = append(g["id"].([]string), x.id)
		g["name"] = append(g["name"].([]string), x.name)
	}
	return controls, detections, related
}

// compactDetection is one product and score category on the alert. Which releases map it
// is provenance, one click away in the detail index like the comments: fourteen products
// with a releases list each cost Elasticsearch a fifth of its indexing rate with every
// framework loaded, and the root's frameworks list still names the releases that
// contributed.
func compactDetection(m *rules.Mapping, inherited bool) entry {
	e := entry{"product": m.Capability, "score_category": m.ScoreCategory, "score_value": m.ScoreValue}
	if inherited {
		e["inherited"] = true
	}
	addDetectionLists(e, m)
	return e
}

// alsoIn labels the other loaded releases that publish m.
func alsoIn(m *rules.Mapping) []string {
	also := make([]string, len(m.AlsoIn))
	for i, s := range m.AlsoIn {
		also[i] = s.Label()
	}
	return also
}

// addDetectionLists adds a detection's product alerts, hunting queries and events.
func addDetectionLists(e entry, m *rules.Mapping) {
	if len(m.Alerts) > 0 {
		as := make([]map[string]any, len(m.Alerts))
		for i, a := range m.Alerts {
			as[i] = map[string]any{"id": a.ID, "name": a.Name}
		}
		e["alerts"] = as
	}
	if len(m.Queries) > 0 {
		e["queries"] = m.Queries
	}
	if len(m.Events) > 0 {
		ev := make([]map[string]any, len(m.Events))
		for i, x := range m.Events {
			ev[i] = map[string]any{"id": x.ID}
			if x.LogonType != "" {
				ev[i]["logon_type"] = x.LogonType
			}
		}
		e["events"] = ev
	}
}

func entryFor(m *rules.Mapping, technique string, inherited bool) entry {
	e := entry{
		"technique":         technique,
		"inherited":         inherited,
		"framework":         m.Source.Framework,
		"framework_version": m.Source.FrameworkVersion,
		"attack_version":    m.Source.AttackVersion,
		"mapping_type":      m.MappingType,
	}
	if m.Source.MappingVersion != "" {
		e["mapping_version"] = m.Source.MappingVersion
	}
	if m.SourceMappingType != "" {
		e["source_mapping_type"] = m.SourceMappingType
	}
	if m.SourceCapabilityID != "" {
		e["source_id"] = m.SourceCapabilityID
	}
	if len(m.AlsoIn) > 0 {
		e["also_in"] = alsoIn(m)
	}
	switch m.Kind {
	case rules.KindDetection:
		e["product"] = m.Capability
		e["capability_id"] = m.CapabilityID
		e["score_category"] = m.ScoreCategory
		e["score_value"] = m.ScoreValue
		if m.Comments != "" {
			e["comments"] = m.Comments
		}
		if len(m.References) > 0 {
			e["references"] = m.References
		}
		addDetectionLists(e, m)
	default:
		e["id"] = m.CapabilityID
		e["name"] = m.Capability
		if m.CapabilityGroup != "" {
			e["group"] = m.CapabilityGroup
		}
	}
	return e
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

func nonNilMaps(xs []map[string]any) []map[string]any {
	if xs == nil {
		return []map[string]any{}
	}
	return xs
}
