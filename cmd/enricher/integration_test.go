//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

// The tests in this file run the real binary against the real Elasticsearch.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "enricher-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "enricher")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build enricher: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func esURL() string {
	if u := os.Getenv("ELASTICSEARCH_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:9200"
}

func esClient(t *testing.T) *elastic.Client {
	t.Helper()
	c, err := elastic.NewClient(config.Elasticsearch{URLs: []string{esURL()}, RequestTimeout: 30 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil); err != nil || code != 200 {
		t.Fatalf("no Elasticsearch at %s (make es-up): %v %s", esURL(), err, body)
	}
	return c
}

// newSpace creates a Kibana-like alerts index for one test, loads n sample alerts into
// it, and deletes it afterwards.
func newSpace(t *testing.T, c *elastic.Client, n int) (sample.KibanaSpace, []sample.Doc) {
	t.Helper()
	ctx := context.Background()
	s := sample.KibanaSpace(fmt.Sprintf("cli%d%04d", time.Now().UnixNano()%1e9, rand.IntN(10000)))
	if err := sample.SetupKibana(ctx, c, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodDelete, "/.internal.alerts-security.alerts-"+string(s)+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
		c.Do(ctx, "other", http.MethodDelete, "/_index_template/"+url.PathEscape(s.Template()), nil, nil)
	})
	var docs []sample.Doc
	for _, d := range sample.Generate(n*2, 5) {
		if d.Index == sample.KibanaAlias && len(docs) < n {
			d.Index = s.Alias()
			docs = append(docs, d)
		}
	}
	if err := sample.Load(ctx, c, docs); err != nil {
		t.Fatal(err)
	}
	return s, docs
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "enricher.yml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func count(t *testing.T, c *elastic.Client, index string, query map[string]any) int {
	t.Helper()
	sample.Refresh(context.Background(), c, []string{index})
	b, _ := json.Marshal(map[string]any{"query": query})
	code, resp, err := c.Do(context.Background(), "other", http.MethodPost, "/"+url.PathEscape(index)+"/_count",
		url.Values{"expand_wildcards": {"open,hidden"}}, b)
	if err != nil || code != 200 {
		t.Fatalf("count: %v %s", err, resp)
	}
	var r struct {
		Count int `json:"count"`
	}
	json.Unmarshal(resp, &r)
	return r.Count
}

// TestSIGTERMFinishesBatchAndExits starts the daemon, sends SIGTERM once it has written a
// batch, and expects a clean exit (status 0) within the shutdown timeout; a later
// `run --once` enriches the rest, so nothing is lost.
func TestSIGTERMFinishesBatchAndExits(t *testing.T) {
	c := esClient(t)
	s, docs := newSpace(t, c, 3000)
	addr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\ndaemon: {listen: %q, batch_size: 100, poll_interval: 1s}\n",
		esURL(), s.Alias(), addr))
	cmd := exec.Command(binPath, "run", "--config", cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the first written batch (metrics), then SIGTERM.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("daemon wrote nothing in 60 s:\n%s", stderr.String())
		}
		if processed(addr) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM:\n%s", err, stderr.String())
		}
	case <-time.After(35 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("daemon did not exit within 35 s of SIGTERM:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Fatalf("no clean stop logged:\n%s", stderr.String())
	}
	t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	out, err := exec.Command(binPath, "run", "--once", "--config", cfg, "--listen", freeAddr(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	if n := count(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}); n != len(docs) {
		t.Fatalf("%d of %d alerts enriched after SIGTERM and a second run", n, len(docs))
	}
}

// processed reads enricher_alerts_processed_total (all outcomes) from the daemon's /metrics.
func processed(addr string) float64 {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var total float64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "enricher_alerts_processed_total{") {
			var v float64
			fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%g", &v)
			total += v
		}
	}
	return total
}

// TestAllFrameworksAgainstElasticsearch runs the binary with every shared CTID file as a
// source and checks what lands on a T1021.002 alert.
func TestAllFrameworksAgainstElasticsearch(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "data", "mappings", "*-enterprise.json"))
	if len(files) == 0 {
		t.Skip("../shared/data/mappings not found beside the checkout")
	}
	c := esClient(t)
	s, _ := newSpace(t, c, 200)
	var src strings.Builder
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		fmt.Fprintf(&src, "    - %q\n", abs)
	}
	cfg := writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\nrules:\n  sources:\n%sdaemon: {listen: %q}\n",
		esURL(), s.Alias(), src.String(), freeAddr(t)))
	out, err := exec.Command(binPath, "run", "--once", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	sample.Refresh(context.Background(), c, []string{s.Alias()})
	b, _ := json.Marshal(map[string]any{"size": 1, "query": map[string]any{"term": map[string]any{"attack_mappings.techniques": "T1021.002"}}})
	code, resp, err := c.Do(context.Background(), "search", http.MethodPost, "/"+url.PathEscape(s.Alias())+"/_search",
		url.Values{"expand_wildcards": {"open,hidden"}}, b)
	if err != nil || code != 200 {
		t.Fatalf("search: %v %s", err, resp)
	}
	var r struct {
		Hits struct {
			Hits []struct {
				Source struct {
					AM struct {
						Controls []struct {
							Framework string
							Releases  []string
							ID        []string
						} `json:"controls"`
						Detections []struct {
							Product       string `json:"product"`
							ScoreCategory string `json:"score_category"`
							ScoreValue    string `json:"score_value"`
							Alerts        []struct{ ID string }
						} `json:"detections"`
						Frameworks []string `json:"frameworks"`
					} `json:"attack_mappings"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || len(r.Hits.Hits) == 0 {
		t.Fatalf("no T1021.002 alert: %v %s", err, resp)
	}
	am := r.Hits.Hits[0].Source.AM
	rev5 := map[string]bool{}
	for _, c := range am.Controls {
		if c.Framework == "nist_800_53" && slices.Contains(c.Releases, "nist_800_53 rev5") {
			for _, id := range c.ID {
				if rev5[id] {
					t.Errorf("control %s named twice: the compact shape names a control once across releases", id)
				}
				rev5[id] = true
			}
		}
	}
	for _, id := range []string{"AC-17", "AC-2", "AC-3", "AC-4", "AC-5", "AC-6", "CA-7", "CM-2", "CM-5", "CM-6", "CM-7", "IA-2", "SC-7", "SI-10", "SI-15", "SI-4"} {
		if !rev5[id] {
			t.Errorf("NIST rev5 %s missing", id)
		}
	}
	mdi, vpc := 0, false
	for _, d := range am.Detections {
		if d.Product == "Microsoft Defender for Identity" && d.ScoreCategory == "detect" {
			mdi++
			if len(d.Alerts) != 2 {
				t.Errorf("Defender for Identity alerts: %+v", d.Alerts)
			}
		}
		if d.Product == "Amazon Virtual Private Cloud" && d.ScoreCategory == "protect" && d.ScoreValue == "partial" {
			vpc = true
		}
	}
	if mdi != 1 || !vpc {
		t.Fatalf("Defender for Identity shown %d times (want 1), AWS VPC protect/partial %v; frameworks %v", mdi, vpc, am.Frameworks)
	}
	t.Logf("frameworks on the alert: %v; %d controls, %d detections", am.Frameworks, len(am.Controls), len(am.Detections))
}

// TestBadConfigExitStatus: a bad config file is a usage error, exit status 2, with the field.
func TestBadConfigExitStatus(t *testing.T) {
	cfg := writeConfig(t, "daemon:\n  batch_size: -3\n")
	out, err := exec.Command(binPath, "run", "--once", "--config", cfg).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2:\n%s", err, out)
	}
	if !strings.Contains(string(out), `daemon.batch_size: must be between 1 and 10000 (got "-3")`) {
		t.Fatalf("message does not name the field and value:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a child process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// metric reads one sample of the daemon's /metrics, by its full name and labels.
func metric(addr, series string) (float64, bool) {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			fmt.Sscanf(l[len(series)+1:], "%g", &v)
			return v, true
		}
	}
	return 0, false
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReloadRulesOnSIGHUP: the daemon reloads its rules folder on SIGHUP and re-enriches
// alerts with the new ruleset; a broken folder keeps the old rules and reports the failure.
func TestReloadRulesOnSIGHUP(t *testing.T) {
	c := esClient(t)
	s, docs := newSpace(t, c, 200)
	dir := t.TempDir()
	for _, name := range []string{"nist_800_53-rev5_t1021.002.yaml", "azure-06.29.2021_t1021.002.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "rules", "builtin", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	addr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\nrules: {dir: %q}\ndaemon: {listen: %q, poll_interval: 200ms}\n",
		esURL(), s.Alias(), dir, addr))
	cmd := exec.Command(binPath, "run", "--config", cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	enriched := func() int {
		return count(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}})
	}
	waitFor(t, "first enrichment", 30*time.Second, func() bool { return enriched() == len(docs) }, &stderr)
	waitFor(t, "/readyz", 10*time.Second, func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, &stderr)

	// Drop the Azure file: detections disappear after the reload.
	os.Remove(filepath.Join(dir, "azure-06.29.2021_t1021.002.yaml"))
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "re-enrichment without detections", 30*time.Second, func() bool {
		return count(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.detections.product"}}) == 0
	}, &stderr)
	if v, _ := metric(addr, "enricher_ruleset_last_load_successful"); v != 1 {
		t.Fatalf("ruleset_last_load_successful = %v after a good reload", v)
	}

	// A broken file: the reload fails, the daemon keeps running with the rules it has.
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("source: {framework: x}\nmappings:\n  - technique: T12\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "failed reload reported", 10*time.Second, func() bool {
		v, ok := metric(addr, "enricher_ruleset_last_load_successful")
		return ok && v == 0
	}, &stderr)
	if !strings.Contains(stderr.String(), "rules reload failed") || !strings.Contains(stderr.String(), "broken.yaml") {
		t.Fatalf("reload failure not logged with the file:\n%s", stderr.String())
	}
	if res, err := http.Get("http://" + addr + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("daemon not healthy after a failed reload: %v", err)
	}
}

// TestRequeueCommand: alerts quarantined (here: larger than a 1 KiB max_alert_bytes) are
// made pending again by `enricher requeue --ids` and `--all`, and then enriched; without a
// selection requeue is a usage error.
func TestRequeueCommand(t *testing.T) {
	c := esClient(t)
	s, docs := newSpace(t, c, 30)
	tiny := writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\ndaemon: {max_alert_bytes: 1024}\n", esURL(), s.Alias()))
	normal := writeConfig(t, fmt.Sprintf("elasticsearch: {urls: [%q]}\nalerts: {indices: [%q]}\n", esURL(), s.Alias()))
	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(binPath, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	quarantined := map[string]any{"term": map[string]any{"attack_mappings.status": "quarantined"}}
	if out, code := run("run", "--once", "--config", tiny, "--listen", freeAddr(t)); code != 1 || !strings.Contains(out, fmt.Sprintf("%d alerts quarantined", len(docs))) {
		t.Fatalf("run with max_alert_bytes 1024: exit %d, want 1 with every alert quarantined\n%s", code, out)
	}
	if n := count(t, c, s.Alias(), quarantined); n != len(docs) {
		t.Fatalf("%d of %d quarantined", n, len(docs))
	}
	if out, code := run("requeue", "--config", normal); code != 2 || !strings.Contains(out, "--ids, --query or --all") {
		t.Fatalf("requeue without a selection: exit %d\n%s", code, out)
	}
	if out, code := run("requeue", "--config", normal, "--ids", docs[0].ID); code != 0 || !strings.Contains(out, "requeued 1 of 1") {
		t.Fatalf("requeue --ids: exit %d\n%s", code, out)
	}
	// The search may still show the alert requeued a moment ago (it matches 30): its
	// guarded write conflicts, the real-time re-read finds it requeued, nothing is left.
	want := fmt.Sprintf("requeued %d of ", len(docs)-1)
	if out, code := run("requeue", "--config", normal, "--all"); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("requeue --all: exit %d, want %q\n%s", code, want, out)
	}
	sample.Refresh(context.Background(), c, []string{s.Alias()}) // what the next poll would see
	if out, code := run("run", "--once", "--config", normal, "--listen", freeAddr(t)); code != 0 {
		t.Fatalf("run after requeue: exit %d\n%s", code, out)
	}
	if n := count(t, c, s.Alias(), quarantined); n != 0 {
		t.Fatalf("%d still quarantined after requeue and a run", n)
	}
	if n := count(t, c, s.Alias(), map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.generation"}}); n != len(docs) {
		t.Fatalf("%d of %d enriched after requeue", n, len(docs))
	}
}
