package rules

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Tables are the normalization tables: capability aliases, revoked technique IDs and
// mapping types. The built-in tables come from tables/*.yaml; a --rules folder extends them.
type Tables struct {
	aliases      map[aliasKey]Alias
	revoked      map[string]Revocation
	mappingTypes map[string]MappingTypeDef // by spelling
}

type aliasKey struct{ framework, from string }

func newTables() *Tables {
	return &Tables{
		aliases:      map[aliasKey]Alias{},
		revoked:      map[string]Revocation{},
		mappingTypes: map[string]MappingTypeDef{},
	}
}

func (t *Tables) addAlias(a Alias) {
	t.aliases[aliasKey{a.Framework, strings.ToLower(a.From)}] = a
}

func (t *Tables) addRevocation(r Revocation) {
	r.ID = NormalizeTechniqueID(r.ID)
	for i, id := range r.ReplacedBy {
		r.ReplacedBy[i] = NormalizeTechniqueID(id)
	}
	t.revoked[r.ID] = r
}

func (t *Tables) addMappingType(d MappingTypeDef) {
	for _, s := range append([]string{d.Type}, d.Spellings...) {
		t.mappingTypes[strings.ToLower(s)] = d
	}
}

// Alias returns the canonical capability ID and product name for a published ID.
// ok is false when the ID has no alias entry.
func (t *Tables) Alias(framework, id string) (canonical, name string, ok bool) {
	k := strings.ToLower(id)
	if a, found := t.aliases[aliasKey{framework, k}]; found {
		return a.To, a.Name, true
	}
	if a, found := t.aliases[aliasKey{"", k}]; found {
		return a.To, a.Name, true
	}
	return id, "", false
}

// Revoked returns the revocation entry for a technique ID, if the ID is revoked or deprecated.
func (t *Tables) Revoked(id string) (Revocation, bool) {
	r, ok := t.revoked[id]
	return r, ok
}

// Revocations returns every revocation entry, sorted by ID.
func (t *Tables) Revocations() []Revocation {
	out := make([]Revocation, 0, len(t.revoked))
	for _, r := range t.revoked {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MappingType returns the canonical mapping type and kind for a published mapping type.
// known is false for a value the table does not list; it is then kept as published
// (lower-cased) and filed as KindRelated.
func (t *Tables) MappingType(s string) (canonical string, kind Kind, known bool) {
	k := strings.ToLower(strings.TrimSpace(s))
	if d, ok := t.mappingTypes[k]; ok {
		return d.Type, d.Kind, true
	}
	return k, KindRelated, false
}

// NormalizeTechniqueID upper-cases and trims an ATT&CK ID: " t1021.002 " -> "T1021.002".
func NormalizeTechniqueID(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

// IsTechniqueID reports whether s (already normalized) is an ATT&CK technique or
// sub-technique ID: T followed by four digits, optionally a dot and three digits.
func IsTechniqueID(s string) bool {
	if len(s) != 5 && len(s) != 9 {
		return false
	}
	if s[0] != 'T' || !digits(s[1:5]) {
		return false
	}
	return len(s) == 5 || (s[5] == '.' && digits(s[6:9]))
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Parent returns the parent technique of a sub-technique ("T1021.002" -> "T1021"), or "".
func Parent(id string) string {
	if i := strings.IndexByte(id, '.'); i > 0 {
		return id[:i]
	}
	return ""
}

var nistID = regexp.MustCompile(`^([A-Za-z]{2})-0*([0-9]+)(?:\s*\(\s*0*([0-9]+)\s*\))?$`)

// NormalizeControlID returns the canonical form of a capability ID for a framework.
// NIST SP 800-53 IDs lose their zero padding and gain upper case ("ac-02" -> "AC-2",
// "AC-02(01)" -> "AC-2(1)"); other frameworks' IDs are only trimmed.
func NormalizeControlID(framework, id string) string {
	id = strings.TrimSpace(id)
	if !strings.HasPrefix(framework, "nist") {
		return id
	}
	m := nistID.FindStringSubmatch(id)
	if m == nil {
		return id
	}
	out := strings.ToUpper(m[1]) + "-" + trimZeros(m[2])
	if m[3] != "" {
		out += "(" + trimZeros(m[3]) + ")"
	}
	return out
}

func trimZeros(s string) string {
	n, err := strconv.Atoi(s)
	if err != nil {
		return s
	}
	return strconv.Itoa(n)
}

var (
	// `"Remote code execution attempt (external ID 2019)"`
	reExternalID = regexp.MustCompile(`"([^"]+?)\s*\(external ID (\d+)\)"`)
	// `Hunting "Anomalous Resource Access" query`, `"X" hunting query`, `"X" query`
	// and `"X" Azure Sentinel Hunting query`.
	reQuery = regexp.MustCompile(`(?i)"([^"]+)"\s+(?:(?:azure|microsoft)\s+sentinel\s+)?(?:(?:hunting|analytics)\s+)?query`)
	// `Windows Event 4624:3`, `event ID 4688`, `Windows event 4624, logon type 3`
	reEvent = regexp.MustCompile(`(?i)\bevent(?:\s+id)?s?\s+(\d{4})(?::(\d+)|,?\s+logon\s+type\s+(\d+))?`)
)

// ExtractFromComments pulls product alert IDs, query names and Windows event IDs out of a
// mapping's free-text comment. The comment itself is kept by the caller.
func ExtractFromComments(comment string) (alerts []ProductAlert, queries []string, events []WindowsEvent) {
	if comment == "" {
		return nil, nil, nil
	}
	// Cheap substring checks first: most comments name none of these, and the regular
	// expressions dominate load time otherwise.
	hasExt := strings.Contains(comment, "external ID")
	hasQuery := strings.Contains(comment, "uery") && strings.Contains(comment, `"`)
	hasEvent := strings.Contains(comment, "vent") || strings.Contains(comment, "VENT")
	if !hasExt && !hasQuery && !hasEvent {
		return nil, nil, nil
	}
	seen := map[string]bool{}
	if hasExt {
		for _, m := range reExternalID.FindAllStringSubmatch(comment, -1) {
			if !seen["a"+m[2]] {
				seen["a"+m[2]] = true
				alerts = append(alerts, ProductAlert{ID: m[2], Name: strings.TrimSpace(m[1])})
			}
		}
	}
	if hasQuery {
		for _, m := range reQuery.FindAllStringSubmatch(comment, -1) {
			if !seen["q"+m[1]] {
				seen["q"+m[1]] = true
				queries = append(queries, m[1])
			}
		}
	}
	if hasEvent {
		for _, m := range reEvent.FindAllStringSubmatch(comment, -1) {
			ev := WindowsEvent{ID: m[1], LogonType: m[2]}
			if ev.LogonType == "" {
				ev.LogonType = m[3]
			}
			if k := "e" + ev.ID + ":" + ev.LogonType; !seen[k] {
				seen[k] = true
				events = append(events, ev)
			}
		}
	}
	return alerts, queries, events
}
