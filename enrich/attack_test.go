package enrich

import (
	"context"
	"encoding/json"
	"fmt"
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
				ID          string
				Name        string
				MappingType string `json:"mapping_type"`
			} `json:"controls"`
			Detections []struct {
				Product string `json:"product"`
				Alerts  []struct{ ID, Name string }
			} `json:"detections"`
			Problems []Problem `json:"problems"`
		} `json:"attack_mappings"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	r := got.Root
	if r.Status != StatusEnriched || len(r.Controls) != 16 || len(r.Detections) != 4 {
		t.Fatalf("got %s", b)
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
