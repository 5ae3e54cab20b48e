package enrich

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestExtractTechniques(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      string
		ids      []string
		problems []Problem
	}{
		{"kibana dotted keys", `{"kibana.alert.rule.threat":[{"framework":"MITRE ATT&CK","technique":[{"id":"T1021","subtechnique":[{"id":"T1021.002"}]}]}]}`,
			[]string{"T1021", "T1021.002"}, nil},
		{"kibana nested after reindex", `{"kibana":{"alert":{"rule":{"threat":[{"technique":[{"id":"T1021","subtechnique":[{"id":"T1021.002"}]}]}]}}}}`,
			[]string{"T1021", "T1021.002"}, nil},
		{"mixed dotted and nested", `{"kibana.alert":{"rule.threat":{"technique":{"subtechnique.id":"t1021.002"}}}}`,
			[]string{"T1021.002"}, nil},
		{"empty threat arrays", `{"kibana.alert.rule.threat":[], "threat":{"technique":{"subtechnique":[]}}}`, nil, nil},
		{"ECS threat with arrays", `{"threat":{"technique":{"id":["T1059"],"subtechnique":{"id":["T1059.001"]}}}}`,
			[]string{"T1059", "T1059.001"}, nil},
		{"defender XDR: parent in the sub-technique field", `{"threat":{"technique":{"subtechnique":{"id":["T1021","T1021.002"]}}}}`,
			[]string{"T1021", "T1021.002"}, nil},
		{"wazuh", `{"rule":{"mitre":{"id":["T1077"],"technique":["Windows Admin Shares"],"tactic":["Lateral Movement"]}}}`,
			[]string{"T1077"}, nil},
		{"sigma tags", `{"tags":["attack.lateral-movement","attack.t1021.002","attack.ta0008","car.2013-05-003"]}`,
			[]string{"T1021.002"}, nil},
		{"case and whitespace", `{"threat.technique.id":" t1021.002 "}`, []string{"T1021.002"}, nil},
		{"single value counts as an array", `{"rule.mitre.id":"T1021.002"}`, []string{"T1021.002"}, nil},
		{"duplicates", `{"rule.mitre.id":["T1021.002","t1021.002"],"tags":["attack.T1021.002"]}`, []string{"T1021.002"}, nil},
		{"wrong types skipped, valid ones kept", `{"threat":{"technique":{"id":[42,{"id":"T1021.002"},true,"T1021.002",null]}}}`,
			[]string{"T1021.002"}, []Problem{
				{Field: "threat.technique.id", Value: "42", Reason: ReasonWrongType},
				{Field: "threat.technique.id", Value: `{"id":"T1021.002"}`, Reason: ReasonWrongType},
				{Field: "threat.technique.id", Value: "true", Reason: ReasonWrongType},
			}},
		{"bad IDs", `{"rule":{"mitre":{"id":["T10","TA0008","x"]}},"tags":["attack.t1021.2"]}`, nil, []Problem{
			{Field: "rule.mitre.id", Value: "T10", Reason: ReasonNotTechnique},
			{Field: "rule.mitre.id", Value: "TA0008", Reason: ReasonNotTechnique},
			{Field: "rule.mitre.id", Value: "x", Reason: ReasonNotTechnique},
			{Field: "tags", Value: "attack.t1021.2", Reason: ReasonNotTechnique},
		}},
		{"object where a string belongs", `{"kibana.alert.rule.threat":{"technique":"T1021"}}`, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, problems := ExtractTechniques(decode(t, tc.src), DefaultFields)
			if !reflect.DeepEqual(ids, tc.ids) {
				t.Errorf("ids = %v, want %v", ids, tc.ids)
			}
			if !reflect.DeepEqual(problems, tc.problems) {
				t.Errorf("problems = %+v, want %+v", problems, tc.problems)
			}
		})
	}
}

// TestRealKibanaAlerts reads the Kibana-written alert fixtures in ../shared: their threat
// arrays are empty, and nothing there may be mistaken for a technique.
func TestRealKibanaAlerts(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "data", "alerts", "*.json"))
	if len(files) == 0 {
		t.Skip("../shared/data/alerts not found beside the checkout")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Value struct {
					Source map[string]any `json:"source"`
				} `json:"value"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			src := doc.Value.Source
			if src["kibana.alert.rule.threat"] == nil {
				t.Fatal("fixture has no kibana.alert.rule.threat key")
			}
			ids, problems := ExtractTechniques(src, DefaultFields)
			if len(ids) != 0 || len(problems) != 0 {
				t.Fatalf("ids %v problems %v from a fixture with empty threat arrays", ids, problems)
			}
			// The same alert with a threat block, as a rule with ATT&CK mapping writes it.
			src["kibana.alert.rule.threat"] = []any{map[string]any{"framework": "MITRE ATT&CK",
				"technique": []any{map[string]any{"id": "T1021", "subtechnique": []any{map[string]any{"id": "T1021.002"}}}}}}
			if ids, _ := ExtractTechniques(src, DefaultFields); !reflect.DeepEqual(ids, []string{"T1021", "T1021.002"}) {
				t.Fatalf("ids %v", ids)
			}
		})
	}
}

func TestValuesSpellings(t *testing.T) {
	src := decode(t, `{"host.name":"a","host":{"name":"b"},"h":[{"x.y":"c"},{"x":{"y":["d","e"]}}]}`)
	if got := Values(src, "host.name"); len(got) != 2 {
		t.Fatalf("host.name: %v", got)
	}
	if got := Values(src, "h.x.y"); !reflect.DeepEqual(got, []any{"c", "d", "e"}) {
		t.Fatalf("h.x.y: %v", got)
	}
}

// A crafted alert with 100k distinct technique IDs and 10k bad values: the IDs looked up
// and the problems reported are bounded, and the rest is counted, not dropped silently.
func TestExtractBounds(t *testing.T) {
	ids := make([]any, 0, 100000)
	for i := range 100000 {
		ids = append(ids, fmt.Sprintf("T%04d.%03d", 1000+i/1000, i%1000))
	}
	bad := make([]any, 0, 10000)
	for i := range 10000 {
		bad = append(bad, fmt.Sprintf("not-an-id-%d", i))
	}
	src := map[string]any{"threat": map[string]any{"technique": map[string]any{"id": ids, "subtechnique": map[string]any{"id": bad}}}}
	x := NewExtractor(DefaultFields)
	got, problems := x.Extract(src)
	if len(got) != MaxTechniqueIDs {
		t.Fatalf("%d IDs, want %d", len(got), MaxTechniqueIDs)
	}
	if len(problems) != MaxProblems+2 {
		t.Fatalf("%d problems, want %d", len(problems), MaxProblems+2)
	}
	last := problems[len(problems)-1]
	if last.Reason != ReasonTruncated || last.Value != "9968 more" {
		t.Fatalf("last problem %+v, want %s with the count (10000 bad - 32 kept)", last, ReasonTruncated)
	}
	var tooMany bool
	for _, p := range problems {
		if p.Reason == ReasonTooMany {
			tooMany = p.Value == "99744 more distinct IDs" && p.Field == "threat.technique.id"
		}
	}
	if !tooMany {
		t.Fatalf("no %s problem naming the field and the count: %+v", ReasonTooMany, problems[:3])
	}
}
