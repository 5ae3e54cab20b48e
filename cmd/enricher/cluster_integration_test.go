//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
	"github.com/enricher-dev/enricher/enrich/sample"
)

// The TestCluster tests run real daemons against the three-node cluster of `make
// cluster-up` (CLUSTER_URL, comma-separated; default its three nodes on 9250-9252).
// `make test` starts the cluster for them and runs them apart from the other passes.

func clusterURLs() []string {
	if u := os.Getenv("CLUSTER_URL"); u != "" {
		return config.SplitURLs(u)
	}
	return []string{"http://127.0.0.1:9250", "http://127.0.0.1:9251", "http://127.0.0.1:9252"}
}

func clusterClient(t *testing.T) *elastic.Client {
	t.Helper()
	c, err := elastic.NewClient(config.Elasticsearch{URLs: clusterURLs(), RequestTimeout: 60 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health",
		url.Values{"wait_for_nodes": {"3"}, "timeout": {"60s"}}, nil)
	if err != nil || code != 200 {
		t.Fatalf("no three-node cluster at %v (make cluster-up): %v %s", clusterURLs(), err, body)
	}
	return c
}

// clusterSpace creates a Kibana-like alerts index with one replica on the cluster and
// returns it; the alerts are loaded by the caller.
func clusterSpace(t *testing.T, c *elastic.Client, n int) (sample.KibanaSpace, []sample.Doc) {
	t.Helper()
	ctx := context.Background()
	s := sample.KibanaSpace(fmt.Sprintf("cl%d", time.Now().UnixNano()%1e9))
	if err := sample.SetupKibana(ctx, c, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Do(ctx, "other", http.MethodDelete, "/.internal.alerts-security.alerts-"+string(s)+"-*", url.Values{"expand_wildcards": {"all"}}, nil)
		c.Do(ctx, "other", http.MethodDelete, "/_index_template/"+url.PathEscape(s.Template()), nil, nil)
	})
	ix := "/.internal.alerts-security.alerts-" + string(s) + "-*"
	if code, body, err := c.Do(ctx, "other", http.MethodPut, ix+"/_settings", url.Values{"expand_wildcards": {"all"}},
		[]byte(`{"index":{"number_of_replicas":1}}`)); err != nil || code != 200 {
		t.Fatalf("one replica: %v %s", err, body)
	}
	if code, body, err := c.Do(ctx, "other", http.MethodGet, "/_cluster/health"+ix,
		url.Values{"wait_for_status": {"green"}, "timeout": {"60s"}, "expand_wildcards": {"all"}}, nil); err != nil || code != 200 {
		t.Fatalf("index not green: %v %s", err, body)
	}
	var docs []sample.Doc
	for _, d := range sample.Generate(n*2, 5) {
		if d.Index == sample.KibanaAlias && len(docs) < n {
			d.Index = s.Alias()
			docs = append(docs, d)
		}
	}
	return s, docs
}

// daemon is one enricher process.
type daemon struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	stderr *syncBuffer
}

func startDaemon(t *testing.T, name, cfgBody string) *daemon {
	t.Helper()
	d := &daemon{name: name, addr: freeAddr(t), stderr: &syncBuffer{}}
	cfg := writeConfig(t, cfgBody)
	d.cmd = exec.Command(binPath, "run", "--config", cfg, "--listen", d.addr)
	d.cmd.Env = append(os.Environ(), "ENRICHER_INSTANCE="+name)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { d.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(40 * time.Second):
				d.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("%s log (last 3000 bytes):\n%s", d.name, tail(d.stderr.String(), 3000))
		}
	})
	return d
}

func (d *daemon) metric(series string) float64 {
	v, _ := metric(d.addr, series)
	return v
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// clusterConfig is a daemon's config over the cluster: daemonExtra is added to its
// daemon settings ("key: value, ..."), extra to the file.
func clusterConfig(alias, daemonExtra, extra string) string {
	var urls []string
	for _, u := range clusterURLs() {
		urls = append(urls, fmt.Sprintf("%q", u))
	}
	return fmt.Sprintf("elasticsearch: {urls: [%s], request_timeout: 20s}\nalerts: {indices: [%q]}\n"+
		"daemon: {batch_size: 500, poll_interval: 1s, backfill_rate: 0, lease: 15s, backoff_max: 2s%s}\n%s",
		strings.Join(urls, ", "), alias, daemonExtra, extra)
}

// versions counts the alerts of index by _version (a sample alert is version 1; written
// once by enricher, version 2).
func versions(t *testing.T, c *elastic.Client, index string) map[int64]int {
	t.Helper()
	ctx := context.Background()
	sample.Refresh(ctx, c, []string{index})
	code, body, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(index)+"/_pit",
		url.Values{"keep_alive": {"1m"}, "expand_wildcards": {"open,hidden"}}, nil)
	if err != nil || code != 200 {
		t.Fatalf("open point in time: %v %s", err, body)
	}
	var pit struct {
		ID string `json:"id"`
	}
	json.Unmarshal(body, &pit)
	out := map[int64]int{}
	var after []any
	for {
		req := map[string]any{"size": 5000, "_source": false, "version": true,
			"pit": map[string]any{"id": pit.ID, "keep_alive": "1m"}, "sort": []any{"_shard_doc"}}
		if after != nil {
			req["search_after"] = after
		}
		b, _ := json.Marshal(req)
		code, body, err := c.Do(ctx, "other", http.MethodPost, "/_search", nil, b)
		if err != nil || code != 200 {
			t.Fatalf("read versions: %v %s", err, body)
		}
		var res struct {
			Hits struct {
				Hits []struct {
					Version int64 `json:"_version"`
					Sort    []any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		json.Unmarshal(body, &res)
		for _, h := range res.Hits.Hits {
			out[h.Version]++
		}
		if len(res.Hits.Hits) == 0 {
			return out
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

// allWrittenOnce waits until all n alerts of index are enriched, and checks each was
// written once (_version 2: loaded, then enriched).
func allWrittenOnce(t *testing.T, c *elastic.Client, index string, n int, log *syncBuffer) {
	t.Helper()
	enriched := map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}
	waitFor(t, "every alert enriched", 5*time.Minute, func() bool {
		return count(t, c, index, enriched) == n
	}, log)
	if vs := versions(t, c, index); vs[2] != n || len(vs) != 1 {
		t.Errorf("alerts by _version: %v; want all %d at version 2 (written once)", vs, n)
	}
}

// TestClusterReplicasSIGKILL: three replicas over 50,000 pending alerts on a three-node
// cluster; one is killed with SIGKILL mid-run. Every alert is enriched, each written once
// (_version 2), and the survivors take the killed replica's share within the bound.
func TestClusterReplicasSIGKILL(t *testing.T) {
	c := clusterClient(t)
	const n = 50000
	s, docs := clusterSpace(t, c, n)
	var ds []*daemon
	// The alerts arrive once the three replicas run: the live path's (a live window
	// over the whole sample) divided three ways.
	for _, name := range []string{"replica-a", "replica-b", "replica-c"} {
		ds = append(ds, startDaemon(t, name, clusterConfig(s.Alias(), ", live_window: 240h", "")))
	}
	var all syncBuffer
	waitFor(t, "three replicas to see each other", 90*time.Second, func() bool {
		for _, d := range ds {
			if d.metric("enricher_replicas") != 3 {
				return false
			}
		}
		return true
	}, &all)
	// Half the alerts, a rollover, the other half: two backing indices of unequal
	// content, where a division by shard would give one replica all the new alerts.
	ctx := context.Background()
	if err := sample.Load(ctx, c, docs[:n/2]); err != nil {
		t.Fatal(err)
	}
	if code, body, err := c.Do(ctx, "other", http.MethodPost, "/"+url.PathEscape(s.Alias())+"/_rollover", nil, nil); err != nil || code != 200 {
		t.Fatalf("rollover: %v %s", err, body)
	}
	c.Do(ctx, "other", http.MethodPut, "/.internal.alerts-security.alerts-"+string(s)+"-*/_settings",
		url.Values{"expand_wildcards": {"all"}}, []byte(`{"index":{"number_of_replicas":1}}`))
	if err := sample.Load(ctx, c, docs[n/2:]); err != nil {
		t.Fatal(err)
	}
	enriched := map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}
	waitFor(t, "a third of the alerts enriched", 5*time.Minute, func() bool {
		return count(t, c, s.Alias(), enriched) >= n/3
	}, ds[2].stderr)
	// Each replica has done about a third of it.
	var done [3]float64
	for i, d := range ds {
		done[i] = processed(d.addr)
	}
	sum := done[0] + done[1] + done[2]
	for i := range done {
		if done[i] < sum/5 {
			t.Errorf("replica %s processed %.0f of %.0f alerts; the work is not shared", ds[i].name, done[i], sum)
		}
	}
	t.Logf("processed by each replica before the kill: %.0f, %.0f, %.0f", done[0], done[1], done[2])
	victim := ds[2]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	killed := time.Now()
	waitFor(t, "the survivors to take over", time.Minute, func() bool {
		return ds[0].metric("enricher_replicas") == 2 && ds[1].metric("enricher_replicas") == 2
	}, ds[0].stderr)
	takeover := time.Since(killed)
	// Bound: lease (15s) + one heartbeat (5s) + one poll (1s).
	if bound := 21 * time.Second; takeover > bound+5*time.Second {
		t.Errorf("takeover took %s; the documented bound is %s", takeover.Round(time.Millisecond), bound)
	}
	allWrittenOnce(t, c, s.Alias(), n, ds[0].stderr)
	var computed, conflicts float64
	for _, d := range ds[:2] {
		computed += d.metric(`enricher_alerts_processed_total{outcome="enriched",path="backfill"}`) +
			d.metric(`enricher_alerts_processed_total{outcome="enriched",path="live"}`)
		conflicts += d.metric(`enricher_es_bulk_items_total{result="conflict"}`)
	}
	t.Logf("takeover after SIGKILL: %s; survivors enriched %.0f alerts, with %.0f write conflicts (%.2f%% of %d)",
		takeover.Round(time.Millisecond), computed, conflicts, 100*conflicts/n, n)
}

// TestClusterNodeKilled: one of the three Elasticsearch nodes is killed mid-run and
// started again; the daemon, which knows all three, goes on and loses nothing.
func TestClusterNodeKilled(t *testing.T) {
	c := clusterClient(t)
	const n = 20000
	s, docs := clusterSpace(t, c, n)
	// The alerts are there before the daemons start: the backfill's, divided two ways.
	if err := sample.Load(context.Background(), c, docs); err != nil {
		t.Fatal(err)
	}
	ds := []*daemon{startDaemon(t, "node-kill-a", clusterConfig(s.Alias(), "", "")), startDaemon(t, "node-kill-b", clusterConfig(s.Alias(), "", ""))}
	enriched := map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}
	waitFor(t, "some alerts enriched", 5*time.Minute, func() bool {
		return count(t, c, s.Alias(), enriched) >= n/4
	}, ds[0].stderr)
	// The first node: the one every client tries first.
	if out, err := exec.Command("../../scripts/cluster-node.sh", "kill", "1").CombinedOutput(); err != nil {
		t.Fatalf("kill node 1: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("../../scripts/cluster-node.sh", "start", "1").Run() })
	time.Sleep(5 * time.Second)
	if out, err := exec.Command("../../scripts/cluster-node.sh", "start", "1").CombinedOutput(); err != nil {
		t.Fatalf("start node 1: %v\n%s", err, out)
	}
	allWrittenOnce(t, c, s.Alias(), n, ds[0].stderr)
}

// TestClusterGenerationsConverge: a replica on older rules has enriched part of the
// alerts when one on newer rules joins; the older one stands aside and every alert ends
// on the newer generation.
func TestClusterGenerationsConverge(t *testing.T) {
	c := clusterClient(t)
	const n = 5000
	s, docs := clusterSpace(t, c, n)
	if err := sample.Load(context.Background(), c, docs); err != nil {
		t.Fatal(err)
	}
	older := startDaemon(t, "gen-old", clusterConfig(s.Alias(), "", "rules: {inherit_parent: true}\n"))
	enriched := map[string]any{"exists": map[string]any{"field": "attack_mappings.ruleset.hash"}}
	waitFor(t, "the older replica to enrich some", 2*time.Minute, func() bool {
		return count(t, c, s.Alias(), enriched) > 0
	}, older.stderr)
	newer := startDaemon(t, "gen-new", clusterConfig(s.Alias(), "", "rules: {inherit_parent: false}\n"))
	waitFor(t, "the older replica to stand aside", time.Minute, func() bool {
		return older.metric("enricher_replica_share_active") == 0 && newer.metric("enricher_replica_share_active") == 1
	}, older.stderr)
	olderWrote := func() float64 {
		return older.metric(`enricher_alerts_processed_total{outcome="enriched",path="live"}`) +
			older.metric(`enricher_alerts_processed_total{outcome="enriched",path="backfill"}`)
	}
	// The batches it had in flight finish.
	aside := olderWrote()
	for stable := 0; stable < 3; {
		time.Sleep(time.Second)
		if w := olderWrote(); w != aside {
			aside, stable = w, 0
		} else {
			stable++
		}
	}
	gen := newer.metric("enricher_ruleset_generation")
	if gen <= older.metric("enricher_ruleset_generation") {
		t.Fatalf("generations: older %v, newer %v", older.metric("enricher_ruleset_generation"), gen)
	}
	onNewer := map[string]any{"term": map[string]any{"attack_mappings.ruleset.generation": int64(gen)}}
	waitFor(t, "every alert on the newer generation", 3*time.Minute, func() bool {
		return count(t, c, s.Alias(), onNewer) == n
	}, newer.stderr)
	if w := olderWrote(); w != aside {
		t.Errorf("the older replica enriched %v alerts while standing aside", w-aside)
	}
}
