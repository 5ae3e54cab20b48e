package coverage

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Navigator layer format written by WriteNavigator.
const (
	NavigatorLayerVersion = "4.5"
	NavigatorVersion      = "5.1.0" // the layer format 4.5 needs Navigator 4.9.0 or later
	NavigatorDomain       = "enterprise-attack"
)

// Layer is an ATT&CK Navigator layer (format 4.5), the subset enricher writes.
type Layer struct {
	Name         string           `json:"name"`
	Versions     LayerVersions    `json:"versions"`
	Domain       string           `json:"domain"`
	Description  string           `json:"description"`
	Sorting      int              `json:"sorting"`
	Layout       LayerLayout      `json:"layout"`
	HideDisabled bool             `json:"hideDisabled"`
	Techniques   []LayerTechnique `json:"techniques"`
	Gradient     LayerGradient    `json:"gradient"`
	LegendItems  []LayerLegend    `json:"legendItems"`
	Metadata     []LayerMeta      `json:"metadata"`
	Links        []LayerLink      `json:"links"`
}

// LayerVersions is the layer's versions object.
type LayerVersions struct {
	Attack    string `json:"attack,omitempty"`
	Navigator string `json:"navigator"`
	Layer     string `json:"layer"`
}

// LayerLayout is the layer's layout object.
type LayerLayout struct {
	Layout                string `json:"layout"`
	ShowID                bool   `json:"showID"`
	ShowName              bool   `json:"showName"`
	ShowAggregateScores   bool   `json:"showAggregateScores"`
	CountUnscored         bool   `json:"countUnscored"`
	AggregateFunction     string `json:"aggregateFunction"`
	ExpandedSubtechniques string `json:"expandedSubtechniques"`
}

// LayerTechnique is one technique object; score is the rule count.
type LayerTechnique struct {
	TechniqueID       string      `json:"techniqueID"`
	Score             int         `json:"score"`
	Comment           string      `json:"comment"`
	Enabled           bool        `json:"enabled"`
	Metadata          []LayerMeta `json:"metadata,omitempty"`
	Links             []LayerLink `json:"links,omitempty"`
	ShowSubtechniques bool        `json:"showSubtechniques"`
}

// LayerMeta is a metadata object, or a divider when Divider is true.
type LayerMeta struct {
	Name    string `json:"name,omitempty"`
	Value   string `json:"value,omitempty"`
	Divider bool   `json:"divider,omitempty"`
}

// MarshalJSON writes a divider as {"divider": true} and anything else as {name, value}.
func (m LayerMeta) MarshalJSON() ([]byte, error) {
	if m.Divider {
		return []byte(`{"divider":true}`), nil
	}
	return json.Marshal(struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}{m.Name, m.Value})
}

// MarshalJSON writes a divider as {"divider": true} and anything else as {label, url}.
func (l LayerLink) MarshalJSON() ([]byte, error) {
	if l.Divider {
		return []byte(`{"divider":true}`), nil
	}
	return json.Marshal(struct {
		Label string `json:"label"`
		URL   string `json:"url"`
	}{l.Label, l.URL})
}

// LayerLink is a link object, or a divider when Divider is true.
type LayerLink struct {
	Label   string `json:"label,omitempty"`
	URL     string `json:"url,omitempty"`
	Divider bool   `json:"divider,omitempty"`
}

// LayerGradient is the score color gradient.
type LayerGradient struct {
	Colors   []string `json:"colors"`
	MinValue int      `json:"minValue"`
	MaxValue int      `json:"maxValue"`
}

// LayerLegend is one legend item.
type LayerLegend struct {
	Label string `json:"label"`
	Color string `json:"color"`
}

// attackURL is the ATT&CK page of a technique: T1021.002 -> .../techniques/T1021/002/.
func attackURL(id string) string {
	return "https://attack.mitre.org/techniques/" + strings.Replace(id, ".", "/", 1) + "/"
}

// mappingsExplorerURL is the CTID Mappings Explorer page of a technique in one ATT&CK release,
// which lists every control and product mapped to it.
func mappingsExplorerURL(attackVersion, id string) string {
	return "https://center-for-threat-informed-defense.github.io/mappings-explorer/attack/attack-" +
		attackVersion + "/domain-enterprise/techniques/" + id + "/"
}

// NavigatorLayer builds the layer: one technique object per technique that is not
// revoked, scored by rule count; metadata lists the rules, controls and product
// detections; links go to the ATT&CK page and the mappings' references.
func NavigatorLayer(rep *Report) *Layer {
	l := &Layer{
		Name:        "enricher coverage",
		Versions:    LayerVersions{Navigator: NavigatorVersion, Layer: NavigatorLayerVersion},
		Domain:      NavigatorDomain,
		Description: summary(rep),
		Sorting:     3,
		Layout: LayerLayout{Layout: "side", ShowID: true, ShowName: true, ShowAggregateScores: true,
			AggregateFunction: "max", ExpandedSubtechniques: "annotated"},
		Techniques: []LayerTechnique{},
		Gradient:   LayerGradient{Colors: []string{"#ff6666", "#ffe766", "#8ec843"}, MinValue: 0, MaxValue: 1},
		LegendItems: []LayerLegend{
			{Label: "no rule (controls or detections mapped)", Color: "#ff6666"},
			{Label: "most rules", Color: "#8ec843"},
		},
		Metadata: []LayerMeta{
			{Name: "run_id", Value: rep.RunID},
			{Name: "generated_at", Value: rep.GeneratedAt.Format("2006-01-02T15:04:05Z07:00")},
			{Name: "rules", Value: fmt.Sprint(rep.Rules)},
		},
		Links: []LayerLink{{Label: "enricher coverage", URL: "https://github.com/enricher-dev/enricher/blob/main/docs/coverage.md"}},
	}
	if rep.RulesetVersion != "" {
		l.Metadata = append(l.Metadata, LayerMeta{Name: "ruleset", Value: rep.RulesetVersion + " " + rep.RulesetHash})
	}
	for _, t := range rep.Techniques {
		if t.Revoked != nil {
			continue // the Navigator does not know revoked IDs; their rules count for the replacement
		}
		n := t.RuleCount()
		l.Gradient.MaxValue = max(l.Gradient.MaxValue, n)
		lt := LayerTechnique{
			TechniqueID: t.ID, Score: n, Enabled: true,
			Comment: fmt.Sprintf("%d rules, %d controls, %d product detections", n, len(t.Controls), len(t.Detections)),
			Links:   []LayerLink{{Label: "ATT&CK " + t.ID, URL: attackURL(t.ID)}},
		}
		if len(t.Gaps) > 0 {
			lt.Comment += "; gaps: " + strings.Join(t.Gaps, ", ")
		}
		if t.Alerts != nil {
			lt.Comment += fmt.Sprintf("; %d alerts", *t.Alerts)
		}
		for _, r := range t.Rules {
			v := fmt.Sprintf("%s: %s", r.Source, r.Name)
			if r.ID != "" {
				v += " (" + r.ID + ")"
			}
			if r.Via != "" {
				v += " via revoked " + r.Via
			}
			lt.Metadata = append(lt.Metadata, LayerMeta{Name: "rule", Value: v})
		}
		if len(t.Controls) > 0 {
			lt.Metadata = append(lt.Metadata, LayerMeta{Divider: true})
			for _, c := range t.Controls {
				lt.Metadata = append(lt.Metadata, LayerMeta{Name: "control", Value: fmt.Sprintf("%s %s %s", c.release(), c.CapabilityID, c.Capability)})
			}
		}
		if len(t.Detections) > 0 {
			lt.Metadata = append(lt.Metadata, LayerMeta{Divider: true})
			for _, d := range t.Detections {
				lt.Metadata = append(lt.Metadata, LayerMeta{Name: "detection", Value: detectionLabel(d)})
			}
		}
		mapped := append(append([]MappingRef{}, t.Detections...), t.Controls...)
		var versions []string
		frameworks := map[string][]string{}
		for _, m := range mapped {
			if m.AttackVersion == "" {
				continue
			}
			versions = mergeStrings(versions, m.AttackVersion)
			frameworks[m.AttackVersion] = mergeStrings(frameworks[m.AttackVersion], m.Framework)
		}
		for _, v := range versions {
			lt.Links = append(lt.Links, LayerLink{
				Label: fmt.Sprintf("CTID Mappings Explorer, ATT&CK %s: %s", v, strings.Join(frameworks[v], ", ")),
				URL:   mappingsExplorerURL(v, t.ID),
			})
		}
		seen := map[string]bool{}
		for _, m := range mapped {
			for _, u := range m.References {
				if seen[u] || !(strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) {
					continue
				}
				seen[u] = true
				lt.Links = append(lt.Links, LayerLink{Label: m.CapabilityID + " reference", URL: u})
			}
		}
		lt.ShowSubtechniques = len(t.Subtechniques) > 0
		l.Techniques = append(l.Techniques, lt)
	}
	return l
}

// WriteNavigator writes the report as an ATT&CK Navigator layer.
func WriteNavigator(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NavigatorLayer(rep))
}
