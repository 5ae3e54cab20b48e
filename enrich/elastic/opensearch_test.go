package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/runner"
)

func TestDetectServer(t *testing.T) {
	es := http.Header{"X-Elastic-Product": {"Elasticsearch"}}
	for _, tc := range []struct {
		name    string
		code    int
		header  http.Header
		body    string
		want    Server
		decided bool
	}{
		{"Elasticsearch", 200, es, `{"version":{"number":"8.19.9","build_flavor":"default"}}`, Server{"elasticsearch", "8.19.9"}, true},
		// The minimal build has no GET / handler; every answer carries the header.
		{"Elasticsearch without GET /", 405, es, `{"error":"Incorrect HTTP method for uri [/] and method [GET], allowed: [DELETE]","status":405}`, Server{"elasticsearch", ""}, true},
		{"Elasticsearch, no privilege", 403, es, `{"error":{"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized"},"status":403}`, Server{"elasticsearch", ""}, true},
		{"Elasticsearch down behind its header", 503, es, `{}`, Server{"elasticsearch", ""}, true},
		{"OpenSearch", 200, http.Header{}, `{"name":"n","version":{"distribution":"opensearch","number":"2.19.6"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`, Server{"opensearch", "2.19.6"}, true},
		{"OpenSearch security plugin", 403, http.Header{}, `{"error":{"root_cause":[{"type":"security_exception","reason":"no permissions for [cluster:monitor/main]"}]},"status":403}`, Server{"opensearch", ""}, true},
		{"OpenSearch security plugin, no credentials", 401, http.Header{"Www-Authenticate": {`Basic realm="OpenSearch Security"`}}, `Unauthorized`, Server{"opensearch", ""}, true},
		// Answers that say nothing about the server are never cached as one.
		{"a redirect", 301, http.Header{"Location": {"https://es/"}}, ``, Server{}, false},
		{"an ingress route not ready", 404, http.Header{}, `default backend - 404`, Server{}, false},
		{"an authenticating proxy", 401, http.Header{"Www-Authenticate": {`Basic realm="proxy"`}}, `Unauthorized`, Server{}, false},
		{"plain HTTP to a TLS port", 400, http.Header{}, `The plain HTTP request was sent to HTTPS port`, Server{}, false},
		{"a proxy, node down", 502, http.Header{}, `Bad Gateway`, Server{}, false},
		{"a proxy, too many requests", 429, http.Header{}, ``, Server{}, false},
		{"something else", 200, http.Header{}, `{"version":{"number":"7.10.2"}}`, Server{"elasticsearch", "7.10.2"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := detect(tc.code, tc.header, []byte(tc.body))
			if ok != tc.decided || got != tc.want {
				t.Fatalf("detect = %+v, %v; want %+v, %v", got, ok, tc.want, tc.decided)
			}
		})
	}
}

func TestPITTiebreaker(t *testing.T) {
	for _, tc := range []struct {
		srv  Server
		want string
	}{
		{Server{"elasticsearch", "8.19.9"}, "_shard_doc"},
		{Server{"elasticsearch", "9.5.4"}, "_shard_doc"},
		{Server{"opensearch", "2.19.6"}, "_id"},
		// 3.3's _shard_doc is unique within one index only.
		{Server{"opensearch", "3.3.2"}, "_id"},
		{Server{"opensearch", ""}, "_id"},
	} {
		c := &Client{srv: &tc.srv}
		if _, ok := c.pitTiebreaker()[tc.want]; !ok {
			t.Errorf("%s: tiebreaker %v, want %s", tc.srv, c.pitTiebreaker(), tc.want)
		}
	}
}

func TestFlattenedBecomesFlatObject(t *testing.T) {
	os := Server{Distribution: DistributionOpenSearch}
	tmpl := `{"index_patterns":["x-*"],"template":{"mappings":{"dynamic":false,"properties":{"kibana":{"properties":` +
		`{"parameters":{"type":"flattened","ignore_above":4096},"name":{"type":"keyword"}}}}}}}`
	for _, tc := range []struct {
		method, path string
		body         string
		rewritten    bool
	}{
		{"PUT", "/_index_template/x", tmpl, true},
		{"PUT", "/_component_template/x", tmpl, true},
		{"PUT", "/.internal.alerts-1/_mapping", `{"properties":{"asset":{"type":"flattened"}}}`, true},
		{"PUT", "/idx", `{"mappings":{"properties":{"asset":{"type":"flattened"}}}}`, true},
		// Documents and searches are never touched, even when they say "flattened".
		{"POST", "/_bulk", "{\"index\":{}}\n{\"type\":\"flattened\"}\n", false},
		{"POST", "/idx/_search", `{"query":{"term":{"type":"flattened"}}}`, false},
		{"PUT", "/idx/_doc/1", `{"type":"flattened"}`, false},
		{"POST", "/idx", `{"type":"flattened"}`, false},
	} {
		got := string(os.requestBody(tc.method, tc.path, []byte(tc.body)))
		if tc.rewritten {
			if strings.Contains(got, "flattened") || strings.Contains(got, "ignore_above") || !strings.Contains(got, `"type":"flat_object"`) {
				t.Errorf("%s %s: %s", tc.method, tc.path, got)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("%s %s: invalid JSON %s", tc.method, tc.path, got)
			}
		} else if got != tc.body {
			t.Errorf("%s %s rewritten: %s", tc.method, tc.path, got)
		}
		if es := (Server{Distribution: DistributionElasticsearch}).requestBody(tc.method, tc.path, []byte(tc.body)); string(es) != tc.body {
			t.Errorf("Elasticsearch: %s %s rewritten: %s", tc.method, tc.path, es)
		}
	}
	if got := string(os.requestBody("PUT", "/_index_template/x", []byte(tmpl))); !strings.Contains(got, `"name":{"type":"keyword"}`) || !strings.Contains(got, `"dynamic":false`) {
		t.Errorf("the rest of the template changed: %s", got)
	}
}

// fakeServer is an Elasticsearch or an OpenSearch node that answers the requests of a
// stable scan (open a point in time, two pages, close it) and a put mapping, and records
// what it was sent.
type fakeServer struct {
	openSearch bool
	noIndex    bool // OpenSearch 2.x: the patterns match no index

	mu   sync.Mutex
	reqs []fakeReq
}

type fakeReq struct {
	method, path, query, auth string
	body                      map[string]any
}

func (f *fakeServer) start(t *testing.T, cfg config.Elasticsearch) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg.URLs = []string{srv.URL}
	cfg.RequestTimeout = 5 * time.Second
	c, err := NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	json.Unmarshal(b, &body)
	f.mu.Lock()
	f.reqs = append(f.reqs, fakeReq{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body})
	f.mu.Unlock()
	if !f.openSearch {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	pitPath, idField := "/_pit", "id"
	if f.openSearch {
		pitPath, idField = "/_search/point_in_time", "pit_id"
	}
	switch {
	case r.URL.Path == "/" && f.openSearch:
		io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.6"}}`)
	case r.URL.Path == "/":
		io.WriteString(w, `{"version":{"number":"8.19.9"}}`)
	case strings.HasSuffix(r.URL.Path, pitPath) && r.Method == http.MethodPost:
		if f.noIndex {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"invalid id: [null]"}],"type":"illegal_argument_exception","reason":"invalid id: [null]"},"status":400}`)
			return
		}
		fmt.Fprintf(w, `{%q:"PIT-1","_shards":{"total":1,"successful":1}}`, idField)
	case r.URL.Path == pitPath && r.Method == http.MethodDelete:
		io.WriteString(w, `{}`)
	case r.URL.Path == "/_search":
		// Two hits per page, the same time: only the tiebreaker tells them apart.
		tb := func(i int) string { return fmt.Sprint(i) }
		if f.openSearch {
			tb = func(i int) string { return fmt.Sprintf("%q", fmt.Sprintf("alert-%d", i)) }
		}
		first := 1
		if body["search_after"] != nil {
			first = 3
		}
		fmt.Fprintf(w, `{"pit_id":"PIT-1","hits":{"hits":[`)
		for i := first; i < first+2 && i <= 3; i++ {
			if i > first {
				io.WriteString(w, ",")
			}
			fmt.Fprintf(w, `{"_index":"alerts","_id":"alert-%d","_seq_no":%d,"_primary_term":1,"_source":{},"sort":[1700000000000,%s]}`, i, i, tb(i))
		}
		io.WriteString(w, `]}}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}`)
	}
}

func (f *fakeServer) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

func scanAll(t *testing.T, c *Client) []string {
	t.Helper()
	s := NewStore(c, StoreOptions{Indices: []string{".alerts-security.alerts-*"}}, nil)
	sc, err := s.Scan(context.Background(), runner.ScanSpec{Root: "am", PageSize: 2, Stable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(context.Background())
	var ids []string
	for {
		page, err := sc.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Alerts) == 0 {
			return ids
		}
		for _, a := range page.Alerts {
			ids = append(ids, a.ID)
		}
	}
}

// TestPointInTimeDialects: a stable scan opens, pages through and closes a point in time
// the way each server wants it, with the tiebreaker each one has; the GET / that tells
// them apart is sent once.
func TestPointInTimeDialects(t *testing.T) {
	for _, tc := range []struct {
		name       string
		openSearch bool
		open       string
		closeBody  string
		tiebreaker string
		after      string
	}{
		{"Elasticsearch", false, "/_pit", `{"id":"PIT-1"}`, "_shard_doc", `[1700000000000,2]`},
		{"OpenSearch", true, "/_search/point_in_time", `{"pit_id":["PIT-1"]}`, "_id", `[1700000000000,"alert-2"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServer{openSearch: tc.openSearch}
			c := f.start(t, config.Elasticsearch{})
			if ids := scanAll(t, c); strings.Join(ids, ",") != "alert-1,alert-2,alert-3" {
				t.Fatalf("scanned %v", ids)
			}
			reqs := f.requests()
			var paths []string
			for _, r := range reqs {
				paths = append(paths, r.method+" "+r.path)
			}
			wantPaths := []string{"GET /", "POST /.alerts-security.alerts-*" + tc.open, "POST /_search", "POST /_search", "DELETE " + tc.open}
			if strings.Join(paths, " | ") != strings.Join(wantPaths, " | ") {
				t.Fatalf("requests\n%s\nwant\n%s", strings.Join(paths, " | "), strings.Join(wantPaths, " | "))
			}
			if q := reqs[1].query; !strings.Contains(q, "keep_alive=") || !strings.Contains(q, "expand_wildcards=open%2Chidden") {
				t.Errorf("open query %s", q)
			}
			search := reqs[2].body
			pit, _ := search["pit"].(map[string]any)
			if pit["id"] != "PIT-1" || pit["keep_alive"] == nil {
				t.Errorf("search pit %v", search["pit"])
			}
			sortSpec, _ := json.Marshal(search["sort"])
			if !strings.Contains(string(sortSpec), `{"`+tc.tiebreaker+`":"asc"}`) {
				t.Errorf("sort %s, want the %s tiebreaker", sortSpec, tc.tiebreaker)
			}
			after, _ := json.Marshal(reqs[3].body["search_after"])
			if string(after) != tc.after {
				t.Errorf("search_after %s, want %s", after, tc.after)
			}
			closeBody, _ := json.Marshal(reqs[4].body)
			if string(closeBody) != tc.closeBody {
				t.Errorf("close body %s, want %s", closeBody, tc.closeBody)
			}
			if srv, err := c.Server(context.Background()); err != nil || srv.OpenSearch() != tc.openSearch {
				t.Errorf("Server() = %v, %v", srv, err)
			}
		})
	}
}

// TestOpenSearchNoIndexYet: on OpenSearch 2.x a point in time over patterns that match no
// index is refused (400); the scan simply finds nothing.
func TestOpenSearchNoIndexYet(t *testing.T) {
	f := &fakeServer{openSearch: true, noIndex: true}
	if ids := scanAll(t, f.start(t, config.Elasticsearch{})); len(ids) != 0 {
		t.Fatalf("scanned %v", ids)
	}
}

// TestOpenSearchCredentials: the plain transport sends the API key and basic auth as
// go-elasticsearch does, and maps a plugin namespace as flat_object.
func TestOpenSearchCredentials(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.Elasticsearch
		want string
	}{
		{config.Elasticsearch{APIKey: "a2V5"}, "ApiKey a2V5"},
		{config.Elasticsearch{Username: "enricher", Password: "pw"}, "Basic ZW5yaWNoZXI6cHc="},
	} {
		f := &fakeServer{openSearch: true}
		c := f.start(t, tc.cfg)
		s := NewStore(c, StoreOptions{Indices: []string{"alerts"}, InstallMappings: true,
			Namespaces: map[string]map[string]any{"asset": PluginNamespaceMapping()}}, nil)
		if p := s.putMapping(context.Background(), "alerts", []string{"asset"}); p == nil || p.Reason != "unavailable" {
			// the fake answers 404 to the put: enough to see what was sent
			t.Fatalf("put mapping: %+v", p)
		}
		reqs := f.requests()
		for _, r := range reqs {
			if r.auth != tc.want {
				t.Errorf("%s %s: Authorization %q, want %q", r.method, r.path, r.auth, tc.want)
			}
		}
		last := reqs[len(reqs)-1]
		b, _ := json.Marshal(last.body["properties"].(map[string]any)["asset"])
		if last.path != "/alerts/_mapping" || string(b) != `{"type":"flat_object"}` {
			t.Errorf("%s %s: asset mapped as %s", last.method, last.path, b)
		}
	}
}

// TestDetectionRetried: a server that cannot be reached, or a proxy that answers 502,
// leaves the server undetected (ErrUnavailable); the next request asks again.
func TestDetectionRetried(t *testing.T) {
	var down sync.Mutex
	status := http.StatusBadGateway
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down.Lock()
		defer down.Unlock()
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		if r.URL.Path == "/" {
			io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.6"}}`)
			return
		}
		io.WriteString(w, `{"status":"green"}`)
	}))
	defer srv.Close()
	c, err := NewClient(config.Elasticsearch{URLs: []string{srv.URL}, RequestTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	down.Lock()
	status = http.StatusOK
	down.Unlock()
	// go-elasticsearch would refuse this server's answers: it must be spoken to plainly.
	if code, body, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil); err != nil || code != 200 {
		t.Fatalf("%d %s %v", code, body, err)
	}
}

// TestPlainTransportFailover: requests go to the URLs in turn; one that nothing listens
// on is skipped at once (the request never left) and rests; a path prefix is kept; a
// redirect is not followed.
func TestPlainTransportFailover(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/prefix/redirect" {
			http.Redirect(w, r, "http://example.com/", http.StatusFound)
			return
		}
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	tr, err := newPlainTransport(config.Elasticsearch{URLs: []string{dead, srv.URL + "/prefix/"}}, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	send := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, path, nil)
		res, err := tr.Perform(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := 0; i < 3; i++ {
		if code := send("/_cluster/health"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if code := send("/redirect"); code != http.StatusFound {
		t.Fatalf("redirect followed: %d", code)
	}
	if strings.Join(got, ",") != "/prefix/_cluster/health,/prefix/_cluster/health,/prefix/_cluster/health,/prefix/redirect" {
		t.Fatalf("paths %v", got)
	}
	if n := tr.nodes[0]; n.failures != 1 || !n.deadUntil.After(time.Now()) {
		t.Fatalf("the dead node does not rest: %+v", n)
	}
	// All nodes resting: the one whose rest ends first is tried anyway.
	tr.nodes[1].deadUntil = time.Now().Add(time.Hour)
	if code := send("/_cluster/health"); code != 200 {
		t.Fatalf("status %d", code)
	}
	if _, err := newPlainTransport(config.Elasticsearch{URLs: []string{"127.0.0.1:9200"}}, http.DefaultTransport); err == nil {
		t.Fatal("a URL without a scheme was taken")
	}
}
