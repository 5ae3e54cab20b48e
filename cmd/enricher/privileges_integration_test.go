//go:build integration

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

// testCA is a certificate authority made by the test, and the server certificate it
// signs for 127.0.0.1.
type testCA struct {
	dir string // ca.crt, http.crt, http.key (what es-up.sh's ES_TLS_DIR wants)
}

func newTestCA(t *testing.T, dir string) testCA {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "enricher test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},                                                                                     // not "localhost": the host-name check is tested
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // client: OpenSearch's transport layer
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", "CERTIFICATE", caDER)
	write("http.crt", "CERTIFICATE", der)
	write("http.key", "PRIVATE KEY", keyDER)
	return testCA{dir: dir}
}

func (c testCA) caFile() string { return filepath.Join(c.dir, "ca.crt") }

// TestLeastPrivilegeOverHTTPS: on a security-enabled node serving HTTPS with a certificate
// from a CA the test made, `enricher setup` maps the fields and creates the state and
// detail indices with an API key holding only the role `setup --print-role setup` prints;
// the daemon then enriches everything with an API key holding only the role `setup
// --print-role daemon` prints, and maps a rolled-over index itself. That key cannot delete
// an index or a document, read an index outside the patterns, create an index, change
// settings, add an alias or change a mapping detail. A wrong password, an unknown, revoked
// or expired API key, a wrong CA and a wrong host name give clear errors at once, and
// /readyz fails.
func TestLeastPrivilegeOverHTTPS(t *testing.T) {
	port, password := "9263", "enricher-admin-pw"
	ca := newTestCA(t, filepath.Join(t.TempDir(), "tls"))
	wrongCA := newTestCA(t, filepath.Join(t.TempDir(), "other"))
	startSecuredServer(t, "es", "ES_PORT="+port, "ES_SECURITY=true", "ES_PASSWORD="+password, "ES_TLS_DIR="+ca.dir)

	esURL := "https://127.0.0.1:" + port
	client := func(cfg config.Elasticsearch) *elastic.Client {
		t.Helper()
		if cfg.URLs == nil {
			cfg.URLs = []string{esURL}
		}
		if cfg.CAFile == "" {
			cfg.CAFile = ca.caFile()
		}
		cfg.RequestTimeout = 30 * time.Second
		c, err := elastic.NewClient(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	admin := client(config.Elasticsearch{Username: "elastic", Password: password})

	s := sample.KibanaSpace("lp")
	if err := sample.SetupKibana(ctx, admin, s); err != nil {
		t.Fatal(err)
	}
	docs := loadAlerts(t, admin, 400, 150, sample.KibanaAlias, s.Alias())

	cfgFor := func(auth string, caFile string, host string) string {
		return writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q], ca_file: %q, %s}\nalerts: {indices: [%q]}\n",
			"https://"+host+":"+port, caFile, auth, s.Alias()))
	}
	adminCfg := cfgFor(fmt.Sprintf("username: elastic, password: %q", password), ca.caFile(), "127.0.0.1")
	run := func(cfg string, args ...string) (string, int) { t.Helper(); return runBinary(t, cfg, args...) }

	roleJSON, code := run(adminCfg, "setup", "--print-role", "daemon")
	if code != 0 {
		t.Fatalf("print-role: %d %s", code, roleJSON)
	}
	// API keys made by the administrator with exactly the role --print-role prints, as
	// the README shows (the administrator is a superuser: the key holds that role and
	// nothing else). expiration "" never expires.
	newKey := func(name, roleJSON, expiration string) (id, encoded string) {
		t.Helper()
		var role map[string]any
		if err := json.Unmarshal([]byte(roleJSON), &role); err != nil || role["indices"] == nil {
			t.Fatalf("print-role printed %q: %v", roleJSON, err)
		}
		body := map[string]any{"name": name, "role_descriptors": map[string]any{"enricher": role}}
		if expiration != "" {
			body["expiration"] = expiration
		}
		code, resp := doJSON(t, admin, http.MethodPost, "/_security/api_key", body)
		var r struct{ ID, Encoded string }
		if code != http.StatusOK || json.Unmarshal(resp, &r) != nil || r.Encoded == "" {
			t.Fatalf("create API key %s: %d %s", name, code, resp)
		}
		return r.ID, r.Encoded
	}
	keyCfg := func(key, caFile, host string) string { return cfgFor(fmt.Sprintf("api_key: %q", key), caFile, host) }
	// setup, with a key holding only the role `--print-role setup` prints.
	setupRole, _ := run(adminCfg, "setup", "--print-role", "setup")
	_, setupKey := newKey("enricher-setup", setupRole, "")
	if out, code := run(keyCfg(setupKey, ca.caFile(), "127.0.0.1"), "setup"); code != 0 || !strings.Contains(out, "1 mapped") ||
		!strings.Contains(out, "mapping detail index enricher-mapping-details: ready; ruleset builtin-t1021.002-1: 20 details written") {
		t.Fatalf("setup with the setup role: exit %d\n%s", code, out)
	}
	_, daemonKey := newKey("enricher-daemon", roleJSON, "")
	daemonCfg := keyCfg(daemonKey, ca.caFile(), "127.0.0.1")

	// The daemon enriches everything with the least-privilege key.
	if out, code := run(daemonCfg, "run", "--once", "--listen", freeAddr(t)); code != 0 {
		t.Fatalf("run --once with the daemon key: exit %d\n%s", code, out)
	}
	enriched := func() int { return countEnriched(t, admin, s.Alias()) }
	if n := enriched(); n != len(docs) {
		t.Fatalf("%d of %d alerts enriched with the daemon key", n, len(docs))
	}

	// What the key cannot do.
	dk := client(config.Elasticsearch{APIKey: daemonKey})
	checkForbidden(t, func(method, path string, body any) (int, []byte) { return doJSON(t, dk, method, path, body) }, []forbidden{
		{"delete an alert index", http.MethodDelete, "/" + s.Backing(), nil},
		{"delete an alert", http.MethodDelete, "/" + s.Backing() + "/_doc/" + url.PathEscape(docs[0].ID), nil},
		{"update an alert", http.MethodPost, "/" + s.Backing() + "/_update/" + url.PathEscape(docs[0].ID), map[string]any{"doc": map[string]any{"kibana.alert.workflow_status": "closed"}}},
		{"read an index outside the patterns", http.MethodPost, "/other-index/_search", map[string]any{}},
		{"create an index", http.MethodPut, "/" + s.Alias() + "-new", nil},
		{"change index settings", http.MethodPut, "/" + s.Backing() + "/_settings", map[string]any{"index.blocks.write": true}},
		{"add an alias", http.MethodPut, "/" + s.Backing() + "/_alias/stolen", nil},
		{"change a mapping detail", http.MethodPut, "/enricher-mapping-details/_doc/x", map[string]any{"comments": "changed"}},
		{"delete the mapping detail index", http.MethodDelete, "/enricher-mapping-details", nil},
	})
	// What the README says it can: the default daemon role holds the put-mapping action
	// (by name), so that the daemon maps rolled-over indices itself.
	if code, resp := doJSON(t, dk, http.MethodPut, "/"+s.Backing()+"/_mapping", map[string]any{"properties": map[string]any{
		"attack_mappings": map[string]any{"properties": map[string]any{"probe": map[string]any{"type": "keyword"}}}}}); code != http.StatusOK {
		t.Errorf("the README says the daemon role holds the put-mapping action, but: %d %.300s", code, resp)
	}

	// Rollover: the new backing index lacks enricher's fields; the daemon maps it itself.
	if code, resp := doJSON(t, admin, http.MethodPost, "/"+s.Alias()+"/_rollover", map[string]any{}); code != 200 {
		t.Fatalf("rollover: %d %s", code, resp)
	}
	late := sample.Doc{Index: s.Alias(), ID: "after-rollover", Source: map[string]any{}}
	for k, v := range docs[0].Source {
		late.Source[k] = v
	}
	late.Source["@timestamp"] = time.Now().UTC().Format(time.RFC3339)
	if err := sample.Load(ctx, admin, []sample.Doc{late}); err != nil {
		t.Fatal(err)
	}
	if out, code := run(daemonCfg, "run", "--once", "--listen", freeAddr(t)); code != 0 || !strings.Contains(out, "put field mappings") {
		t.Fatalf("after rollover: exit %d, want 0 with the new index mapped\n%s", code, out)
	}
	if n := enriched(); n != len(docs)+1 {
		t.Fatalf("%d of %d alerts enriched after rollover", n, len(docs)+1)
	}

	// A key that cannot change any mapping of the alert indices (--print-role daemon
	// --no-put-mapping): a rolled-over index setup has not mapped yet is left out, named,
	// until setup runs again.
	strictRole, _ := run(adminCfg, "setup", "--print-role", "daemon", "--no-put-mapping")
	_, strictKey := newKey("enricher-strict", strictRole, "")
	if code, resp := doJSON(t, admin, http.MethodPost, "/"+s.Alias()+"/_rollover", map[string]any{}); code != 200 {
		t.Fatalf("rollover: %d %s", code, resp)
	}
	late.ID, late.Source["@timestamp"] = "after-second-rollover", time.Now().UTC().Format(time.RFC3339)
	if err := sample.Load(ctx, admin, []sample.Doc{late}); err != nil {
		t.Fatal(err)
	}
	checkStrictKey(t, client(config.Elasticsearch{APIKey: strictKey}), s.Alias(), keyCfg(strictKey, ca.caFile(), "127.0.0.1"),
		keyCfg(setupKey, ca.caFile(), "127.0.0.1"), func() int { return enriched() - len(docs) - 2 })

	// Refusals: each ends run --once at once (exit 1) with the cause named. A revoked
	// (invalidated) key and an expired one are refused like an unknown one.
	revokedID, revokedKey := newKey("enricher-revoked", roleJSON, "")
	if code, resp := doJSON(t, admin, http.MethodDelete, "/_security/api_key", map[string]any{"ids": []string{revokedID}}); code != http.StatusOK {
		t.Fatalf("invalidate API key: %d %s", code, resp)
	}
	_, expiredKey := newKey("enricher-expired", roleJSON, "1s")
	time.Sleep(2 * time.Second)
	revoked := keyCfg(revokedKey, ca.caFile(), "127.0.0.1")
	checkRefusals(t, []refusal{
		{"wrong password", cfgFor(`username: elastic, password: not-the-password`, ca.caFile(), "127.0.0.1"), "authentication failed"},
		{"unknown API key", keyCfg("dW5rbm93bjprZXk=", ca.caFile(), "127.0.0.1"), "authentication failed"},
		{"revoked API key", revoked, "authentication failed"},
		{"expired API key", keyCfg(expiredKey, ca.caFile(), "127.0.0.1"), "authentication failed"},
		{"wrong CA", keyCfg(daemonKey, wrongCA.caFile(), "127.0.0.1"), "not signed by a trusted CA"},
		{"wrong host name", keyCfg(daemonKey, ca.caFile(), "localhost"), "does not name the host"},
	})

	// The daemon with a revoked key stays up, and /readyz fails with the reason.
	checkReadyzFails(t, revoked, "authentication failed")
}

// TestOpenSearchLeastPrivilegeOverHTTPS is TestLeastPrivilegeOverHTTPS on OpenSearch with
// its security plugin (scripts/opensearch-up.sh OS_SECURITY=true; the plugin Maven Central
// serves is 2.19.4.0, so the node is 2.19.4), over HTTPS with a CA the test made. Roles,
// users and role mappings go through the plugin's REST API, as an administrator would
// create them. The alerts are Wazuh 4.x alerts in daily indices; the next day's index,
// made by dynamic mapping, is mapped by the daemon itself.
func TestOpenSearchLeastPrivilegeOverHTTPS(t *testing.T) {
	port, password := "9264", "Enricher-admin-pw-42"
	ca := newTestCA(t, filepath.Join(t.TempDir(), "tls"))
	wrongCA := newTestCA(t, filepath.Join(t.TempDir(), "other"))
	startSecuredServer(t, "opensearch", "OS_VERSION=2.19.4", "OS_PORT="+port, "OS_SECURITY=true", "OS_ADMIN_PASSWORD="+password, "OS_TLS_DIR="+ca.dir)

	osURL := "https://127.0.0.1:" + port
	client := func(user, pw string) *elastic.Client {
		t.Helper()
		c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{osURL}, CAFile: ca.caFile(), Username: user, Password: pw,
			RequestTimeout: 30 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	admin := client("admin", password)
	if srv, err := admin.Server(ctx); err != nil || srv.Distribution != elastic.DistributionOpenSearch {
		t.Fatalf("server: %+v %v", srv, err)
	}

	prefix := "wazuh-alerts-4.x-lp-"
	docs := loadAlerts(t, admin, 2000, 100, sample.WazuhIndex, prefix+"2026.12.01")

	cfgFor := func(auth string, caFile string, host string) string {
		return writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q], ca_file: %q, %s}\nalerts: {indices: [%q]}\n",
			"https://"+host+":"+port, caFile, auth, prefix+"*"))
	}
	adminCfg := cfgFor(fmt.Sprintf("username: admin, password: %q", password), ca.caFile(), "127.0.0.1")
	run := func(cfg string, args ...string) (string, int) { t.Helper(); return runBinary(t, cfg, args...) }
	// A user holding exactly the role setup --print-role prints (detected: OpenSearch's).
	newUser := func(user, pw, roleName, roleJSON string) {
		t.Helper()
		var role map[string]any
		if err := json.Unmarshal([]byte(roleJSON), &role); err != nil || role["index_permissions"] == nil {
			t.Fatalf("print-role printed %q: %v", roleJSON, err)
		}
		for _, req := range []struct {
			path string
			body any
		}{
			{"/_plugins/_security/api/roles/" + roleName, role},
			{"/_plugins/_security/api/internalusers/" + user, map[string]any{"password": pw}},
			{"/_plugins/_security/api/rolesmapping/" + roleName, map[string]any{"users": []string{user}}},
		} {
			if code, resp := doJSON(t, admin, http.MethodPut, req.path, req.body); code != http.StatusOK && code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", req.path, code, resp)
			}
		}
	}
	setupRole, code := run(adminCfg, "setup", "--print-role", "setup")
	if code != 0 {
		t.Fatalf("print-role setup: %d %s", code, setupRole)
	}
	newUser("enricher-setup", "Setup-pw-4242", "enricher_setup", setupRole)
	if out, code := run(cfgFor(`username: enricher-setup, password: Setup-pw-4242`, ca.caFile(), "127.0.0.1"), "setup"); code != 0 || !strings.Contains(out, "1 mapped") ||
		!strings.Contains(out, "mapping detail index enricher-mapping-details: ready") {
		t.Fatalf("setup with the setup role: exit %d\n%s", code, out)
	}
	roleJSON, code := run(adminCfg, "setup", "--print-role", "daemon")
	if code != 0 {
		t.Fatalf("print-role daemon: %d %s", code, roleJSON)
	}
	newUser("enricher", "Daemon-pw-4242", "enricher_daemon", roleJSON)
	daemonCfg := cfgFor(`username: enricher, password: Daemon-pw-4242`, ca.caFile(), "127.0.0.1")

	if out, code := run(daemonCfg, "run", "--once", "--listen", freeAddr(t)); code != 0 || strings.Contains(out, "security_exception") || strings.Contains(out, "no permissions for") {
		t.Fatalf("run --once with the daemon's role: exit %d, want 0 and no refusal\n%s", code, out)
	}
	enriched := func() int { return countEnriched(t, admin, prefix+"*") }
	if n := enriched(); n != len(docs) {
		t.Fatalf("%d of %d alerts enriched with the daemon's role", n, len(docs))
	}
	// The role lets it close its points in time too (a refused close is only logged).
	if code, resp := doJSON(t, admin, http.MethodGet, "/_search/point_in_time/_all", nil); code != http.StatusOK || strings.Contains(string(resp), `"pit_id"`) {
		t.Errorf("points in time left open after run --once: %d %s", code, resp)
	}

	dk := client("enricher", "Daemon-pw-4242")
	day1 := prefix + "2026.12.01"
	checkForbidden(t, func(method, path string, body any) (int, []byte) { return doJSON(t, dk, method, path, body) }, []forbidden{
		{"delete an alert index", http.MethodDelete, "/" + day1, nil},
		{"delete an alert", http.MethodDelete, "/" + day1 + "/_doc/" + url.PathEscape(docs[0].ID), nil},
		{"update an alert", http.MethodPost, "/" + day1 + "/_update/" + url.PathEscape(docs[0].ID), map[string]any{"doc": map[string]any{"rule": map[string]any{"level": 0}}}},
		{"read an index outside the patterns", http.MethodPost, "/other-index/_search", map[string]any{}},
		{"create an index", http.MethodPut, "/" + prefix + "new", nil},
		{"change index settings", http.MethodPut, "/" + day1 + "/_settings", map[string]any{"index.blocks.write": true}},
		{"add an alias", http.MethodPut, "/" + day1 + "/_alias/stolen", nil},
		{"delete the mapping detail index", http.MethodDelete, "/enricher-mapping-details", nil},
		{"read the security configuration", http.MethodGet, "/_plugins/_security/api/internalusers", nil},
	})

	// The next day's index (dynamic mapping, as the Wazuh indexer's template makes it):
	// the daemon maps it itself.
	late := sample.Doc{Index: prefix + "2026.12.02", ID: "next-day", Source: docs[0].Source}
	if err := sample.Load(ctx, admin, []sample.Doc{late}); err != nil {
		t.Fatal(err)
	}
	if out, code := run(daemonCfg, "run", "--once", "--listen", freeAddr(t)); code != 0 || !strings.Contains(out, "put field mappings") || strings.Contains(out, "security_exception") {
		t.Fatalf("next day: exit %d, want 0 with the new index mapped\n%s", code, out)
	}
	if n := enriched(); n != len(docs)+1 {
		t.Fatalf("%d of %d alerts enriched after the next day's index", n, len(docs)+1)
	}

	strictRole, _ := run(adminCfg, "setup", "--print-role", "daemon", "--no-put-mapping")
	newUser("enricher-strict", "Strict-pw-4242", "enricher_strict", strictRole)
	third := sample.Doc{Index: prefix + "2026.12.03", ID: "third-day", Source: docs[0].Source}
	if err := sample.Load(ctx, admin, []sample.Doc{third}); err != nil {
		t.Fatal(err)
	}
	checkStrictKey(t, client("enricher-strict", "Strict-pw-4242"), third.Index, cfgFor(`username: enricher-strict, password: Strict-pw-4242`, ca.caFile(), "127.0.0.1"),
		cfgFor(`username: enricher-setup, password: Setup-pw-4242`, ca.caFile(), "127.0.0.1"), func() int { return enriched() - len(docs) - 2 })

	wrongPassword := cfgFor(`username: enricher, password: not-the-password`, ca.caFile(), "127.0.0.1")
	checkRefusals(t, []refusal{
		{"wrong password", wrongPassword, "authentication failed"},
		{"API key (OpenSearch has none)", cfgFor(`api_key: "dW5rbm93bjprZXk="`, ca.caFile(), "127.0.0.1"), "authentication failed"},
		{"wrong CA", cfgFor(`username: enricher, password: Daemon-pw-4242`, wrongCA.caFile(), "127.0.0.1"), "not signed by a trusted CA"},
		{"wrong host name", cfgFor(`username: enricher, password: Daemon-pw-4242`, ca.caFile(), "localhost"), "does not name the host"},
	})

	checkReadyzFails(t, wrongPassword, "authentication failed")
}

// runBinary runs the enricher binary with args and --config cfg: its combined output and
// exit code.
func runBinary(t *testing.T, cfg string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append(args, "--config", cfg)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// forbidden is a request the daemon's credential must be refused (403).
type forbidden struct {
	what, method, path string
	body               any
}

func checkForbidden(t *testing.T, do func(method, path string, body any) (int, []byte), cases []forbidden) {
	t.Helper()
	for _, tc := range cases {
		if code, resp := do(tc.method, tc.path, tc.body); code != http.StatusForbidden {
			t.Errorf("the daemon's credential can %s: %d %.300s", tc.what, code, resp)
		}
	}
}

// refusal is a configuration whose run --once must end at once with exit 1, want in its
// output.
type refusal struct{ name, cfg, want string }

func checkRefusals(t *testing.T, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		start := time.Now()
		out, code := runBinary(t, tc.cfg, "run", "--once", "--listen", freeAddr(t))
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q:\n%s", tc.name, code, tc.want, out)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: run --once took %s to give up", tc.name, d)
		}
	}
}

// checkReadyzFails: the daemon run with cfg's refused credential stays up, and /readyz
// fails with want in its body.
func checkReadyzFails(t *testing.T, cfg, want string) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binPath, "run", "--config", cfg, "--listen", addr)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var body string
	waitFor(t, "/readyz to fail with the reason", 30*time.Second, func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, want)
	}, &stderr)
	t.Logf("/readyz with a refused credential: %s", strings.TrimSpace(body))
}

// startSecuredServer runs scripts/<name>-down.sh --wipe and <name>-up.sh with env added (the
// server fails the test if it does not start) and stops and wipes it when the test ends.
// It returns a runner for the other scripts, with the same environment.
func startSecuredServer(t *testing.T, name string, env ...string) func(script string, args ...string) error {
	t.Helper()
	env = append(os.Environ(), env...)
	script := func(script string, args ...string) error {
		cmd := exec.Command(filepath.Join("..", "..", "scripts", script), args...)
		cmd.Env = env
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}
	_ = script(name+"-down.sh", "--wipe")
	if err := script(name + "-up.sh"); err != nil {
		t.Fatalf("%s-up.sh with security and TLS: %v", name, err)
	}
	t.Cleanup(func() { _ = script(name+"-down.sh", "--wipe") })
	return script
}

// doJSON sends body as JSON (hidden indices included in searches); it fails the test
// only when no server answered.
func doJSON(t *testing.T, c *elastic.Client, method, path string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	var q url.Values
	if strings.HasSuffix(path, "/_search") {
		q = url.Values{"expand_wildcards": {"open,hidden"}}
	}
	code, resp, err := c.Do(context.Background(), "other", method, path, q, b)
	if err != nil && code == 0 {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, resp
}

// loadAlerts loads up to n of the first `of` sample alerts meant for index from, into index
// to, and one document into other-index, which the daemon must not be able to read.
func loadAlerts(t *testing.T, admin *elastic.Client, of, n int, from, to string) []sample.Doc {
	t.Helper()
	var docs []sample.Doc
	for _, d := range sample.Generate(of, 9) {
		if d.Index == from && len(docs) < n {
			d.Index = to
			docs = append(docs, d)
		}
	}
	ctx := context.Background()
	if err := sample.Load(ctx, admin, docs); err != nil {
		t.Fatal(err)
	}
	if err := sample.Load(ctx, admin, []sample.Doc{{Index: "other-index", ID: "1", Source: map[string]any{"secret": "x"}}}); err != nil {
		t.Fatal(err)
	}
	return docs
}

// checkStrictKey: a credential holding the role of --print-role daemon --no-put-mapping
// (client c, config strictCfg) cannot put a mapping on index, inside enricher's root or
// outside it; run --once leaves the new, unmapped index out, naming it and `enricher
// setup` (exit 1); after setup (setupCfg) maps it, run --once enriches its alert.
// pending counts the alerts not enriched yet, -1 before and 0 after.
func checkStrictKey(t *testing.T, c *elastic.Client, index, strictCfg, setupCfg string, pending func() int) {
	t.Helper()
	for _, field := range []string{"attack_mappings", "not_enrichers"} {
		put := map[string]any{"properties": map[string]any{field: map[string]any{"properties": map[string]any{"probe_strict": map[string]any{"type": "keyword"}}}}}
		if code, resp := doJSON(t, c, http.MethodPut, "/"+index+"/_mapping", put); code != http.StatusForbidden {
			t.Errorf("the --no-put-mapping credential can put a mapping under %s: %d %.300s", field, code, resp)
		}
	}
	if out, code := runBinary(t, strictCfg, "run", "--once", "--listen", freeAddr(t)); code != 1 || !strings.Contains(out, "forbidden") || !strings.Contains(out, "enricher setup") {
		t.Fatalf("new index with the --no-put-mapping credential: exit %d, want 1 naming the index as forbidden and setup\n%s", code, out)
	}
	if n := pending(); n != -1 {
		t.Fatalf("%d alerts pending before setup, want the new index's one (-1)", n)
	}
	if out, code := runBinary(t, setupCfg, "setup"); code != 0 {
		t.Fatalf("setup again: exit %d\n%s", code, out)
	}
	if out, code := runBinary(t, strictCfg, "run", "--once", "--listen", freeAddr(t)); code != 0 {
		t.Fatalf("after setup, with the --no-put-mapping credential: exit %d\n%s", code, out)
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d alerts pending after setup and run --once", n)
	}
}

// countEnriched refreshes the indices of pattern and counts their alerts enricher wrote.
func countEnriched(t *testing.T, admin *elastic.Client, pattern string) int {
	t.Helper()
	ctx := context.Background()
	sample.Refresh(ctx, admin, []string{pattern})
	b, _ := json.Marshal(map[string]any{"query": map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.generation"}}})
	code, resp, err := admin.Do(ctx, "other", http.MethodPost, "/"+pattern+"/_count", url.Values{"expand_wildcards": {"open,hidden"}}, b)
	var r struct{ Count int }
	if err != nil || code != 200 || json.Unmarshal(resp, &r) != nil {
		t.Fatalf("count: %v %s", err, resp)
	}
	return r.Count
}
