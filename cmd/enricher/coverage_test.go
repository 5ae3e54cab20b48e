package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var coverageTestdata = filepath.Join("..", "..", "rules", "coverage", "testdata", "rules")

func runCoverageCmd(t *testing.T, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if _, ok := commands["coverage"]; !ok {
		commands["coverage"] = coverageCommand() // until main.go's table lists it
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var out, errb bytes.Buffer
	code = run(context.Background(), env{stdout: &out, stderr: &errb, getenv: getenv}, append([]string{"coverage"}, args...))
	return code, out.String(), errb.String()
}

func TestCoverageUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no paths", nil, "no rule files or folders given"},
		{"bad format", []string{"--format", "xml", coverageTestdata}, `--format must be one of table, markdown, json, csv, navigator, not "xml"`},
		{"bad since", []string{"--since", "yesterday", coverageTestdata}, `--since "yesterday"`},
		{"bad es url", []string{"--es-url", "localhost:9200", coverageTestdata}, `must be an http:// or https:// URL`},
		{"missing path", []string{"does-not-exist"}, "does-not-exist"},
		{"bad flag", []string{"--nope", coverageTestdata}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runCoverageCmd(t, nil, tt.args...)
			if code != 2 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tt.want)
			}
		})
	}
}

func TestCoverageJSON(t *testing.T) {
	code, out, errs := runCoverageCmd(t, nil, "--format", "json", coverageTestdata)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Rules      int `json:"rules"`
		Techniques []struct {
			ID    string `json:"id"`
			Rules []struct {
				ID  string `json:"id"`
				Via string `json:"via"`
			} `json:"rules"`
			Detections []any `json:"detections"`
		} `json:"techniques"`
		Errors []struct{ Path, Reason string } `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Rules != 5 || len(rep.Errors) != 2 {
		t.Errorf("rules %d, errors %v; want 5 and 2", rep.Rules, rep.Errors)
	}
	for _, tt := range rep.Techniques {
		if tt.ID == "T1021.002" && (len(tt.Rules) != 4 || len(tt.Detections) == 0) {
			t.Errorf("T1021.002: %+v", tt)
		}
	}
	// Unreadable files are named on stderr with the reason; the exit status stays 0.
	for _, f := range []string{"broken_rule.toml: parse TOML", "broken_sigma.yml: parse YAML"} {
		if !strings.Contains(errs, f) {
			t.Errorf("stderr lacks %q:\n%s", f, errs)
		}
	}
}

func TestCoverageSharedElasticCSV(t *testing.T) {
	shared := filepath.Join("..", "..", "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("shared data not present: %v", err)
	}
	dir := filepath.Join(shared, "data", "detection-rules", "elastic")
	code, out, errs := runCoverageCmd(t, nil, "--format", "csv", "--only-rule-techniques", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		if r[0] == "T1021.002" {
			if r[4] != "22" || strings.Count(r[6], ";") != 21 {
				t.Errorf("T1021.002 row: count %s, ids %s", r[4], r[6])
			}
			return
		}
	}
	t.Error("no T1021.002 row")
}

func TestCoverageNavigatorOut(t *testing.T) {
	out := filepath.Join(t.TempDir(), "layer.json")
	code, stdout, errs := runCoverageCmd(t, nil, "--format", "navigator", "--out", out, coverageTestdata)
	if code != 0 || stdout != "" || !strings.Contains(errs, "wrote "+out) {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Versions struct{ Layer string } `json:"versions"`
		Domain   string                 `json:"domain"`
	}
	if err := json.Unmarshal(b, &l); err != nil || l.Versions.Layer != "4.5" || l.Domain != "enterprise-attack" {
		t.Errorf("layer %+v, err %v", l, err)
	}
}

func TestCoverageTable(t *testing.T) {
	code, out, errs := runCoverageCmd(t, nil, coverageTestdata)
	if code != 0 || !strings.Contains(out, "TECHNIQUE") || !strings.Contains(out, "revoked -> T1021.002") {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", code, out, errs)
	}
}

// TestCoverageElasticsearch runs --es-url/--since and --to-es against a fake cluster.
func TestCoverageElasticsearch(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		paths = append(paths, r.Method+" "+r.URL.Path)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/":
			io.WriteString(w, `{"version":{"number":"8.19.9","build_flavor":"default"},"tagline":"You Know, for Search"}`)
		case strings.HasSuffix(r.URL.Path, "/_field_caps"):
			io.WriteString(w, `{"fields":{"kibana.alert.rule.threat.technique.subtechnique.id":{"keyword":{"aggregatable":true}}}}`)
		case strings.HasSuffix(r.URL.Path, "/_search") && bytes.Contains(body, []byte(`"filters"`)):
			if !bytes.Contains(body, []byte(`"now-7d"`)) {
				t.Errorf("search without the --since bound: %s", body)
			}
			io.WriteString(w, `{"aggregations":{"techniques":{"buckets":{"T1021.002":{"doc_count":9}}}}}`)
		case strings.HasSuffix(r.URL.Path, "/_search"):
			io.WriteString(w, `{"aggregations":{"f1":{"buckets":[{"key":"T1021.002","doc_count":9}]}}}`)
		case r.URL.Path == "/_bulk":
			n := bytes.Count(body, []byte("\n")) / 2
			io.WriteString(w, `{"errors":false,"items":[`+strings.TrimSuffix(strings.Repeat(`{"index":{"status":201}},`, n), ",")+`]}`)
		case r.Method == http.MethodPut:
			io.WriteString(w, `{"acknowledged":true}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	getenv := func(k string) string {
		if k == "ELASTICSEARCH_URL" {
			return srv.URL
		}
		return ""
	}
	code, out, errs := runCoverageCmd(t, getenv, "--since", "7d", "--to-es", "--index", "cov-test", "--format", "json", coverageTestdata)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"alerts": 9`) || !strings.Contains(errs, "documents to cov-test") {
		t.Errorf("stdout lacks alert count or stderr lacks the write:\n%s", errs)
	}
	if !slices.Contains(paths, "PUT /cov-test") || paths[len(paths)-1] != "POST /_bulk" {
		t.Errorf("requests = %v", paths)
	}
}

func TestSinceDateMath(t *testing.T) {
	tests := map[string]string{"30d": "now-30d", "12h": "now-12h", "2w": "now-2w", "all": "", "2026-08-01T00:00:00Z": "2026-08-01T00:00:00Z"}
	for in, want := range tests {
		if got, err := sinceDateMath(in); err != nil || got != want {
			t.Errorf("sinceDateMath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "30", "d30", "-1d", "30 days"} {
		if _, err := sinceDateMath(bad); err == nil {
			t.Errorf("sinceDateMath(%q) accepted", bad)
		}
	}
}
