package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupPrintRole: --print-role prints Elasticsearch's role descriptor or OpenSearch's
// security plugin role, chosen by --server; when the server cannot be asked and no
// --server is given it prints nothing, exits 1 and names the flag; bad values are usage
// errors.
func TestSetupPrintRole(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yml")
	// Nothing listens on port 1: the server cannot be asked.
	if err := os.WriteFile(cfg, []byte("elasticsearch: {urls: [\"http://127.0.0.1:1\"]}\nalerts: {indices: [\"wazuh-alerts-4.x-*\"]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	decode := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		return m
	}

	code, out, errOut := runCmd(t, "setup", "--print-role", "daemon", "--config", cfg)
	if code != 1 || out != "" || !strings.Contains(errOut, "--server opensearch") {
		t.Fatalf("no server to ask: exit %d, want 1, no role and the flag named\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "setup", "--print-role", "daemon", "--server", "opensearch", "--config", cfg)
	role := decode(out)
	if code != 0 || role["index_permissions"] == nil {
		t.Fatalf("--server opensearch: exit %d\n%s", code, out)
	}
	b, _ := json.Marshal(role)
	for _, want := range []string{`"indices:data/write/bulk"`, `"indices:admin/mapping/put"`, `".ds-wazuh-alerts-4.x-*"`, `".enricher-state"`, `"enricher-mapping-details"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("OpenSearch daemon role lacks %s: %s", want, b)
		}
	}
	for _, bad := range []string{"delete_index", "manage", "indices_all", "create_index"} {
		if strings.Contains(string(b), `"`+bad+`"`) {
			t.Errorf("OpenSearch daemon role grants %s: %s", bad, b)
		}
	}
	// --no-put-mapping: the index and bulk actions by name instead of the index privilege
	// (or action group), which would include the put-mapping action.
	for _, srv := range []string{"elasticsearch", "opensearch"} {
		code, out, _ = runCmd(t, "setup", "--print-role", "daemon", "--no-put-mapping", "--server", srv, "--config", cfg)
		if code != 0 {
			t.Fatalf("--no-put-mapping --server %s: exit %d\n%s", srv, code, out)
		}
		var first struct {
			Indices          []struct{ Privileges []string }
			IndexPermissions []struct {
				AllowedActions []string `json:"allowed_actions"`
			} `json:"index_permissions"`
		}
		if err := json.Unmarshal([]byte(out), &first); err != nil || len(first.Indices)+len(first.IndexPermissions) == 0 {
			t.Fatalf("--no-put-mapping --server %s: %v\n%s", srv, err, out)
		}
		var got []string
		if srv == "elasticsearch" {
			got = first.Indices[0].Privileges
		} else {
			got = first.IndexPermissions[0].AllowedActions
		}
		joined := strings.Join(got, " ")
		if strings.Contains(" "+joined+" ", " index ") || strings.Contains(joined, "mapping/put") || !strings.Contains(joined, "indices:data/write/index*") {
			t.Errorf("--no-put-mapping --server %s: alert indices get %v, want the write actions by name and no put mapping", srv, got)
		}
	}
	code, out, _ = runCmd(t, "setup", "--print-role", "setup", "--server", "elasticsearch", "--config", cfg)
	if code != 0 || decode(out)["indices"] == nil {
		t.Fatalf("--server elasticsearch setup: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"--print-role", "daemon", "--server", "solr"},
		{"--print-role", "admin", "--server", "opensearch"},
		{"--server", "opensearch"},
		{"--print-role", "setup", "--no-put-mapping", "--server", "opensearch"},
		{"--no-put-mapping"},
	} {
		if code, _, errOut := runCmd(t, append(append([]string{"setup"}, args...), "--config", cfg)...); code != 2 || errOut == "" {
			t.Errorf("setup %v: exit %d, want 2 (usage) with a message: %s", args, code, errOut)
		}
	}
}
