package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

// replicas measures, on the three-node cluster of `make cluster-up`: alerts/s of one and
// of three daemons (real processes) next to the raw _bulk ceiling of the same cluster,
// the work computed by more than one replica, and the takeover time after SIGKILL.
func replicas(ctx context.Context, rs *rules.Ruleset) error {
	if _, err := os.Stat(*bin); err != nil {
		return fmt.Errorf("replica figures need the binary %s (make build): %w", *bin, err)
	}
	urls := config.SplitURLs(*clusterURL)
	c, err := elastic.NewClient(config.Elasticsearch{URLs: urls, RequestTimeout: 120 * time.Second}, nil)
	if err != nil {
		return err
	}
	if code, body, err := c.Do(ctx, "other", http.MethodGet, "/_cluster/health",
		url.Values{"wait_for_nodes": {"3"}, "timeout": {"30s"}}, nil); err != nil || code != 200 {
		return fmt.Errorf("no three-node cluster at %s (make cluster-up): %v %s", *clusterURL, err, body)
	}
	space := sample.KibanaSpace("benchrep")
	docs := kibanaDocs(space, *n)
	defer deleteSpace(ctx, c, space)
	dir, err := os.MkdirTemp("", "enricher-bench-replicas")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ceil, err := clusterCeiling(ctx, c, space, docs, rs)
	if err != nil {
		return err
	}
	one, st1, err := replicaRun(ctx, c, space, docs, dir, 1, false)
	if err != nil {
		return err
	}
	three, st, err := replicaRun(ctx, c, space, docs, dir, 3, true)
	if err != nil {
		return err
	}
	fmt.Printf("replicas, three-node cluster %s, %d Kibana alerts (index with one replica):\n", *clusterURL, len(docs))
	fmt.Printf("  raw _bulk ceiling (same writes)      %8.0f alerts/s\n", ceil)
	fmt.Printf("  one replica                          %8.0f alerts/s (%.2f of the ceiling)\n", one, one/ceil)
	fmt.Printf("  three replicas                       %8.0f alerts/s (%.2f of the ceiling, %.2fx one replica)\n", three, three/ceil, three/one)
	fmt.Printf("  computed by more than one replica    %8.2f%% (%d write conflicts, %d with one replica; target < 1%%)\n",
		100*float64(max(st.conflicts-st1.conflicts, 0))/float64(len(docs)), st.conflicts, st1.conflicts)
	fmt.Printf("  takeover after SIGKILL               %8.1f s (lease %s: bound %.0f s)\n\n", st.takeover.Seconds(), benchLease, (benchLease + benchLease/3 + time.Second).Seconds())
	return nil
}

const benchLease = 15 * time.Second // the default

// clusterCeiling is runCeiling on the cluster, with the alert index given one replica.
func clusterCeiling(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, rs *rules.Ruleset) (float64, error) {
	var rates []float64
	for range max(*rounds/2, 1) {
		if err := resetReplicated(ctx, c, space, docs); err != nil {
			return 0, err
		}
		r, err := runCeilingLoaded(ctx, c, space, docs, rs)
		if err != nil {
			return 0, err
		}
		rates = append(rates, r)
	}
	return median(rates), nil
}

// resetReplicated loads docs into a fresh space whose index has one replica.
func resetReplicated(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc) error {
	deleteSpace(ctx, c, space)
	if err := sample.SetupKibana(ctx, c, space); err != nil {
		return err
	}
	ix := "/.internal.alerts-security.alerts-" + string(space) + "-*"
	if code, body, err := c.Do(ctx, "other", http.MethodPut, ix+"/_settings", url.Values{"expand_wildcards": {"all"}},
		[]byte(`{"index":{"number_of_replicas":1}}`)); err != nil || code != 200 {
		return fmt.Errorf("index settings: %v %s", err, body)
	}
	if code, body, err := c.Do(ctx, "other", http.MethodGet, "/_cluster/health"+ix,
		url.Values{"wait_for_status": {"green"}, "timeout": {"60s"}, "expand_wildcards": {"all"}}, nil); err != nil || code != 200 {
		return fmt.Errorf("index not green: %v %s", err, body)
	}
	return sample.Load(ctx, c, docs)
}

// The daemons of a replica run read the alerts through viewAlias, which is added once
// they all see each other: before that their pattern matches nothing.
const viewAlias = "benchrep-view-1"

func reveal(ctx context.Context, c *elastic.Client, space sample.KibanaSpace) error {
	b := fmt.Sprintf(`{"actions":[{"add":{"index":%q,"alias":%q}}]}`, space.Backing(), viewAlias)
	if code, body, err := c.Do(ctx, "other", http.MethodPost, "/_aliases", nil, []byte(b)); err != nil || code != 200 {
		return fmt.Errorf("add alias: %v %s", err, body)
	}
	return nil
}

type replicaStats struct {
	conflicts int
	takeover  time.Duration
}

// replicaRun starts k daemons over the space's alerts, hidden until all k see each
// other, and returns the alerts/s from the moment they are revealed until all are
// enriched. With kill, one daemon is then killed and the time until the others see two
// replicas is measured.
func replicaRun(ctx context.Context, c *elastic.Client, space sample.KibanaSpace, docs []sample.Doc, dir string, k int, kill bool) (float64, replicaStats, error) {
	var st replicaStats
	if err := resetReplicated(ctx, c, space, docs); err != nil {
		return 0, st, err
	}
	var urls []string
	for _, u := range config.SplitURLs(*clusterURL) {
		urls = append(urls, fmt.Sprintf("%q", u))
	}
	cfg := filepath.Join(dir, fmt.Sprintf("replicas-%d.yml", k))
	body := fmt.Sprintf("elasticsearch: {urls: [%s], request_timeout: 60s}\nalerts: {indices: [%q]}\n"+
		"daemon: {batch_size: %d, poll_interval: 1s, backfill_rate: 0, live_window: 2400h, lease: %s, state_index: .bench-replicas}\n",
		strings.Join(urls, ", "), "benchrep-view*", *batch, benchLease)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return 0, st, err
	}
	type proc struct {
		cmd  *exec.Cmd
		addr string
	}
	var ps []proc
	defer func() {
		for _, p := range ps {
			if p.cmd.ProcessState == nil {
				p.cmd.Process.Signal(syscall.SIGTERM)
				p.cmd.Wait()
			}
		}
	}()
	for i := range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, st, err
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(*bin, "run", "--config", cfg, "--listen", addr)
		cmd.Env = append(os.Environ(), fmt.Sprintf("ENRICHER_INSTANCE=bench-%d-%d", k, i))
		if *verbose {
			f, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("enricher-bench-replica-%d-%d.log", k, i)))
			if err != nil {
				return 0, st, err
			}
			defer f.Close()
			cmd.Stderr = f
		}
		if err := cmd.Start(); err != nil {
			return 0, st, err
		}
		ps = append(ps, proc{cmd, addr})
	}
	all := func(cond func(addr string) bool) bool {
		for _, p := range ps {
			if p.cmd.ProcessState == nil && !cond(p.addr) {
				return false
			}
		}
		return true
	}
	if err := until(2*time.Minute, func() bool {
		return all(func(a string) bool { return scrape(a, "enricher_replicas") == float64(k) })
	}); err != nil {
		return 0, st, fmt.Errorf("%d replicas did not see each other: %w", k, err)
	}
	if err := reveal(ctx, c, space); err != nil {
		return 0, st, err
	}
	start := time.Now()
	done := map[string]any{"query": map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}}
	if err := until(10*time.Minute, func() bool {
		return countMatching(ctx, c, viewAlias, done) >= len(docs)
	}); err != nil {
		return 0, st, fmt.Errorf("%d replicas did not enrich %d alerts: %w", k, len(docs), err)
	}
	rate := float64(len(docs)) / time.Since(start).Seconds()
	for _, p := range ps {
		st.conflicts += int(scrape(p.addr, `enricher_es_bulk_items_total{result="conflict"}`))
	}
	if kill && k > 1 {
		victim := ps[k-1]
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.cmd.Wait()
		killed := time.Now()
		if err := until(2*time.Minute, func() bool {
			return all(func(a string) bool { return scrape(a, "enricher_replicas") == float64(k-1) })
		}); err != nil {
			return 0, st, fmt.Errorf("no takeover after SIGKILL: %w", err)
		}
		st.takeover = time.Since(killed)
	}
	return rate, st, nil
}

// until polls cond every 100 ms until it holds or d passes.
func until(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// scrape reads one series from a daemon's /metrics (0 if absent).
func scrape(addr, series string) float64 {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			fmt.Sscanf(l[len(series)+1:], "%g", &v)
			return v
		}
	}
	return 0
}

// countMatching counts what a search body (nil: every document) selects in index; -1
// on error.
func countMatching(ctx context.Context, c *elastic.Client, index string, query map[string]any) int {
	var b []byte
	if query != nil {
		b, _ = json.Marshal(query)
	}
	code, body, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(index)+"/_count",
		url.Values{"expand_wildcards": {"open,hidden"}}, b)
	if err != nil || code != 200 {
		return -1
	}
	var r struct {
		Count int `json:"count"`
	}
	if json.Unmarshal(body, &r) != nil {
		return -1
	}
	return r.Count
}
