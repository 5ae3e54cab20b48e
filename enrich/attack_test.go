package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/rules"
)

func builtin(t testing.TB) *rules.Ruleset {
	t.Helper()
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestAttackStageKibanaAlert(t *testing.T) {
	st := NewAttackStage(builtin(t), AttackOptions{InheritParent: true, Now: func() time.Time { return time.Unix(0, 0) }})
	var src map[string]any
	if err := json.Unmarshal([]byte(`{
	  "kibana.alert.rule.threat": [{"framework": "MITRE ATT&CK",
	    "technique": [{"id": "T1021", "subtechnique": [{"id": " t1021.002 "}]}]}],
	  "kibana.alert.workflow_status": "open",
	  "threat": {"technique": {"id": 42}}
	}`), &src); err != nil {
		t.Fatal(err)
	}
	patches, err := st.Enrich(context.Background(), []*Alert{{ID: "a", Source: src}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(patches[0])
	var got struct {
		Root struct {
			Status     string   `json:"status"`
			Techniques []string `json:"techniques"`
			Unmapped   []string `json:"unmapped_techniques"`
			Controls   []struct {
				Framework string   `json:"framework"`
				Releases  []string `json:"releases"`
				ID        []string `json:"id"`
				Name      []string `json:"name"`
			} `json:"controls"`
			Detections []struct {
				Product  string   `json:"product"`
				Releases []string `json:"releases"`
				Alerts   []struct{ ID, Name string }
				Comments string `json:"comments"`
			} `json:"detections"`
			Frameworks []string  `json:"frameworks"`
			Details    []string  `json:"details"`
			Problems   []Problem `json:"problems"`
		} `json:"attack_mappings"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	r := got.Root
	if r.Status != StatusEnriched || len(r.Controls) != 1 || len(r.Controls[0].ID) != 16 || len(r.Controls[0].Name) != 16 ||
		r.Controls[0].Framework != "nist_800_53" || len(r.Detections) != 4 {
		t.Fatalf("got %s", b)
	}
	for _, d := range r.Detections {
		if d.Comments != "" || d.Releases != nil {
			t.Fatalf("detection %+v: the compact shape has no free text and no releases (the root lists them)", d)
		}
	}
	if strings.Join(r.Frameworks, ",") != "nist_800_53 rev5,azure 06/29/2021" {
		t.Fatalf("frameworks %v", r.Frameworks)
	}
	if len(r.Details) != 1 || r.Details[0] != DetailRef("T1021.002", st.rs.Hash()) {
		t.Fatalf("details %v", r.Details)
	}
	if len(r.Problems) != 1 || r.Problems[0].Reason != ReasonWrongType {
		t.Fatalf("problems %+v", r.Problems)
	}
	if len(r.Unmapped) != 1 || r.Unmapped[0] != "T1021" {
		t.Fatalf("unmapped %v", r.Unmapped)
	}
}

// The document cache stays within its entry and byte bounds on alerts that each carry
// another technique set, and its byte count is exact.
func TestAttackCacheBounded(t *testing.T) {
	st := NewAttackStage(builtin(t), AttackOptions{})
	for i := range 5000 {
		st.static([]string{"T1021.002", fmt.Sprintf("T%04d", 1000+i%9000), fmt.Sprintf("T1059.%03d", i%1000)})
	}
	sum := 0
	for k, d := range st.cache {
		sum += len(k) + len(d.json)
	}
	if len(st.cache) > maxCachedTechniqueSets || st.cacheBytes > maxCachedBytes || sum != st.cacheBytes {
		t.Fatalf("cache: %d entries, %d bytes counted, %d bytes held", len(st.cache), st.cacheBytes, sum)
	}
}

// The compact shape names each control once across the releases of its framework, as the
// newest release names it, with the releases that publish it, and leaves the free text to the detail index; the full
// shape keeps one entry per release with comments.
func TestAttackCompactDeduplicatesReleases(t *testing.T) {
	control := func(id, name string) rules.FileMapping {
		return rules.FileMapping{Technique: "T1021.002", CapabilityID: id, Capability: name, MappingType: "mitigates"}
	}
	tables, err := rules.LoadTables()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Build([]*rules.File{
		{Source: rules.Source{Framework: "nist_800_53", FrameworkVersion: "rev4", AttackVersion: "14.1"},
			Mappings: []rules.FileMapping{control("AC-17", "Remote Access (as rev4 names it)")}},
		{Source: rules.Source{Framework: "nist_800_53", FrameworkVersion: "rev5", AttackVersion: "16.1"},
			Mappings: []rules.FileMapping{control("AC-17", "Remote Access"), control("AC-2", "Account Management")}},
		{Source: rules.Source{Framework: "azure", FrameworkVersion: "04/26/2025", AttackVersion: "16.1"},
			Mappings: []rules.FileMapping{{Technique: "T1021.002", CapabilityID: "microsoft_sentinel", Capability: "Microsoft Sentinel",
				MappingType: "technique_scores", ScoreCategory: "detect", ScoreValue: "minimal", Comments: "long text",
				References: []string{"https://example.com"}, Queries: []string{"Anomalous Resource Access"}}}},
		{Source: rules.Source{Framework: "m365", FrameworkVersion: "07/18/2025", AttackVersion: "16.1"},
			Mappings: []rules.FileMapping{{Technique: "T1021.002", CapabilityID: "microsoft_sentinel", Capability: "Microsoft Sentinel",
				MappingType: "technique_scores", ScoreCategory: "detect", ScoreValue: "partial"}}},
		{Source: rules.Source{Framework: "kev", FrameworkVersion: "07/28/2025", AttackVersion: "16.1"},
			Mappings: []rules.FileMapping{
				{Technique: "T1021.002", CapabilityID: "CVE-2017-0144", Capability: "Microsoft SMBv1 Remote Code Execution", MappingType: "exploitation_technique"},
				{Technique: "T1021.002", CapabilityID: "CVE-2020-0796", Capability: "Microsoft SMBv3 Compression", MappingType: "exploitation_technique"}}},
	}, tables, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := map[string]any{"threat": map[string]any{"technique": map[string]any{"id": "T1021.002"}}}
	compact, _ := json.Marshal(NewAttackStage(rs, AttackOptions{}).Document(src, "now"))
	want := `"controls":[{"framework":"nist_800_53","id":["AC-17"],"name":["Remote Access"],"releases":["nist_800_53 rev4","nist_800_53 rev5"]},` +
		`{"framework":"nist_800_53","id":["AC-2"],"name":["Account Management"],"releases":["nist_800_53 rev5"]}]`
	// Detections list no releases: the root names every release that maps one, the one
	// shown and the one it stands for.
	var root struct {
		Frameworks []string `json:"frameworks"`
	}
	_ = json.Unmarshal(compact, &root)
	sort.Strings(root.Frameworks)
	if strings.Join(root.Frameworks, ",") != "azure 04/26/2025,kev 07/28/2025,m365 07/18/2025,nist_800_53 rev4,nist_800_53 rev5" ||
		strings.Count(string(compact), `"product":"Microsoft Sentinel"`) != 1 {
		t.Fatalf("compact frameworks or detections:\n%s", compact)
	}
	// Related mappings are counted, their IDs and names left to the detail index.
	wantRelated := `"related":[{"count":2,"framework":"kev","releases":["kev 07/28/2025"]}]`
	if !strings.Contains(string(compact), want) || strings.Contains(string(compact), "long text") ||
		!strings.Contains(string(compact), `"queries":["Anomalous Resource Access"]`) ||
		!strings.Contains(string(compact), wantRelated) || strings.Contains(string(compact), "CVE-") {
		t.Fatalf("compact:\n%s\nwant controls %s and %s", compact, want, wantRelated)
	}
	full, _ := json.Marshal(NewAttackStage(rs, AttackOptions{Detail: DetailFull}).Document(src, "now"))
	var got struct {
		Controls   []map[string]any `json:"controls"`
		Detections []map[string]any `json:"detections"`
	}
	if err := json.Unmarshal(full, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Controls) != 3 || len(got.Detections) != 1 || got.Detections[0]["comments"] != "long text" ||
		!strings.Contains(string(full), `"id":"CVE-2017-0144"`) {
		t.Fatalf("full: %s", full)
	}
	if NewAttackStage(rs, AttackOptions{}).Fingerprint() == NewAttackStage(rs, AttackOptions{Detail: DetailFull}).Fingerprint() {
		t.Fatal("the shape must be part of the fingerprint")
	}
}

// A Wazuh alert's own NIST tags are compared with CTID's NIST mappings for its techniques.
func TestComplianceCheck(t *testing.T) {
	st := NewAttackStage(builtin(t), AttackOptions{InheritParent: true})
	src := map[string]any{"rule": map[string]any{
		"mitre":       map[string]any{"id": []any{"T1021.002"}},
		"nist_800_53": []any{"AC.7", "AU.14", "SI.4", "AC.02", "not a control", 42},
	}}
	b, _ := json.Marshal(st.Document(src, "now"))
	var got struct {
		Check struct {
			Field     string   `json:"field"`
			Both      []string `json:"both"`
			OnlyAlert []string `json:"only_alert"`
			OnlyCTID  []string `json:"only_ctid"`
			Differs   bool     `json:"differs"`
		} `json:"compliance_check"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Check
	if c.Field != "rule.nist_800_53" || strings.Join(c.Both, ",") != "AC-2,SI-4" || strings.Join(c.OnlyAlert, ",") != "AC-7,AU-14" ||
		len(c.OnlyCTID) != 14 || !c.Differs {
		t.Fatalf("compliance check: %+v\n%s", c, b)
	}
	// A Wazuh 5 finding: its technique and its rule's compliance tags sit under wazuh.rule.
	finding := map[string]any{"wazuh": map[string]any{"rule": map[string]any{
		"mitre":      map[string]any{"technique": map[string]any{"id": []any{"T1021.002"}, "name": []any{"SMB/Windows Admin Shares"}}},
		"compliance": map[string]any{"nist_800_53": []any{"AC-17", "SI-4"}, "pci_dss": []any{"10.2.5"}},
	}}}
	if ids, _ := ExtractTechniques(finding, DefaultFields); strings.Join(ids, ",") != "T1021.002" {
		t.Fatalf("Wazuh 5 technique: %v", ids)
	}
	got.Check = struct {
		Field     string   `json:"field"`
		Both      []string `json:"both"`
		OnlyAlert []string `json:"only_alert"`
		OnlyCTID  []string `json:"only_ctid"`
		Differs   bool     `json:"differs"`
	}{}
	b, _ = json.Marshal(st.Document(finding, "now"))
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if c := got.Check; c.Field != "wazuh.rule.compliance.nist_800_53" || strings.Join(c.Both, ",") != "AC-17,SI-4" || len(c.OnlyAlert) != 0 || !c.Differs {
		t.Fatalf("Wazuh 5 compliance check: %+v\n%s", c, b)
	}
	// Sigma-style tags on a Wazuh 5 rule.
	if ids, _ := ExtractTechniques(map[string]any{"wazuh.rule.tags": []any{"attack.lateral-movement", "attack.t1021.002"}}, DefaultFields); strings.Join(ids, ",") != "T1021.002" {
		t.Fatalf("Wazuh 5 tags: %v", ids)
	}
	// An alert without the tags has no check.
	b, _ = json.Marshal(st.Document(map[string]any{"rule": map[string]any{"mitre": map[string]any{"id": "T1021.002"}}}, "now"))
	if strings.Contains(string(b), "compliance_check") {
		t.Fatalf("check without tags: %s", b)
	}
	for in, want := range map[string]string{"AC.7": "AC-7", "ac-02": "AC-2", "AC.2(1)": "AC-2(1)", "SI.04(05)": "SI-4(5)", "A.7": "", "AC.x": "", "AC-": ""} {
		if got := NormalizeNISTControl(in); got != want {
			t.Errorf("NormalizeNISTControl(%q) = %q, want %q", in, got, want)
		}
	}
}
