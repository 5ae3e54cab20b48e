package rules

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRevokedAgreesWithElastic checks tables/revoked.yaml against Elastic's map of revoked
// ATT&CK IDs (detection-rules etc/attack-technique-redirects.json, in ../shared): every
// entry we have agrees with Elastic's wherever both list the ID.
func TestRevokedAgreesWithElastic(t *testing.T) {
	path := filepath.Join(sharedDir(t, "detection-rules"), "elastic-etc", "attack-technique-redirects.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Elastic's redirect map: %v", err)
	}
	var elastic struct {
		Mapping map[string]string `json:"mapping"`
	}
	if err := json.Unmarshal(data, &elastic); err != nil {
		t.Fatal(err)
	}
	tables := mustTables(t)
	both := 0
	for _, r := range tables.Revocations() {
		e, ok := elastic.Mapping[r.ID]
		if !ok {
			continue
		}
		both++
		if len(r.ReplacedBy) != 1 || r.ReplacedBy[0] != e {
			t.Errorf("%s: we say %v, Elastic says %s", r.ID, r.ReplacedBy, e)
		}
	}
	if both < 40 {
		t.Errorf("only %d IDs in both tables", both)
	}
	for _, id := range []string{"T1086", "T1077", "T1053.001"} {
		if _, ok := tables.Revoked(id); !ok {
			t.Errorf("%s missing", id)
		}
	}
	if r, _ := tables.Revoked("T1086"); len(r.ReplacedBy) != 1 || r.ReplacedBy[0] != "T1059.001" {
		t.Errorf("T1086 -> %v", r.ReplacedBy)
	}
}
