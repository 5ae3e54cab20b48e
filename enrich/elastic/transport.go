package elastic

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
)

// performer sends one request to a node of the cluster: *elasticsearch.Client (go-elasticsearch,
// for Elasticsearch) and *plainTransport (net/http, for OpenSearch and for the GET / that
// tells them apart) both are one. The request's URL is a path and a query; the performer
// picks the node, adds the credentials and sends it, without retrying (retries are the
// runner's, per item, with backoff).
type performer interface {
	Perform(*http.Request) (*http.Response, error)
}

// plainTransport is a performer over net/http built from the same configuration as the
// go-elasticsearch client: the URLs taken in turn (round robin), a node that failed to answer
// left out until it has rested (as go-elasticsearch does), the API key as
// "Authorization: ApiKey …", or basic auth (from the configuration or the URL), and the TLS
// settings of the *http.Transport it is given (elasticsearch.ca_file). It never follows
// redirects (they could carry the credentials elsewhere).
//
// A connection that could not even be opened (nothing listening, DNS) is tried on the next
// node at once: the request never reached a server, so sending it elsewhere is safe.
type plainTransport struct {
	rt       http.RoundTripper
	apiKey   string
	username string
	password string

	mu    sync.Mutex
	nodes []*node
	next  int
	now   func() time.Time
}

type node struct {
	url       *url.URL
	failures  int
	deadUntil time.Time
}

// Resting times of a node that failed: 60 s, doubling with each failure in a row up to 32
// times that (go-elasticsearch's).
const (
	restInitial = 60 * time.Second
	restCutoff  = 5
)

func newPlainTransport(cfg config.Elasticsearch, rt http.RoundTripper) (*plainTransport, error) {
	addrs := cfg.URLs
	if len(addrs) == 0 {
		if env := os.Getenv("ELASTICSEARCH_URL"); env != "" {
			for _, a := range strings.Split(env, ",") {
				addrs = append(addrs, strings.TrimSpace(a))
			}
		}
	}
	if len(addrs) == 0 {
		addrs = []string{"http://localhost:9200"}
	}
	t := &plainTransport{rt: rt, apiKey: cfg.APIKey, username: cfg.Username, password: cfg.Password, now: time.Now}
	for _, a := range addrs {
		u, err := url.Parse(strings.TrimRight(a, "/"))
		if err != nil {
			return nil, fmt.Errorf("elasticsearch.urls: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("elasticsearch.urls: %q: want an http:// or https:// URL", a)
		}
		t.nodes = append(t.nodes, &node{url: u})
	}
	return t, nil
}

// pick returns the next node that is not resting, or, when all are, the one whose rest
// ends first (so a request is always sent somewhere: the cluster may be back).
func (t *plainTransport) pick(skip map[*node]bool) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var soonest *node
	for i := range t.nodes {
		n := t.nodes[(t.next+i)%len(t.nodes)]
		if skip[n] {
			continue
		}
		if !now.Before(n.deadUntil) {
			t.next = (t.next + i + 1) % len(t.nodes)
			return n
		}
		if soonest == nil || n.deadUntil.Before(soonest.deadUntil) {
			soonest = n
		}
	}
	return soonest
}

func (t *plainTransport) failed(n *node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n.failures++
	n.deadUntil = t.now().Add(restInitial << min(n.failures-1, restCutoff))
}

func (t *plainTransport) answered(n *node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n.failures, n.deadUntil = 0, time.Time{}
}

// Perform implements performer.
func (t *plainTransport) Perform(req *http.Request) (*http.Response, error) {
	tried := map[*node]bool{}
	for {
		n := t.pick(tried)
		if n == nil {
			return nil, errors.New("no node to send the request to")
		}
		tried[n] = true
		out, err := t.outgoing(req, n.url)
		if err != nil {
			return nil, err
		}
		res, err := t.rt.RoundTrip(out)
		if err == nil {
			t.answered(n)
			return res, nil
		}
		if req.Context().Err() == nil { // our own deadline or cancel says nothing of the node
			t.failed(n)
		}
		if !notSent(err) || req.Context().Err() != nil || len(tried) == len(t.nodes) {
			return nil, err
		}
	}
}

// outgoing is req addressed to the node at base, with the credentials.
func (t *plainTransport) outgoing(req *http.Request, base *url.URL) (*http.Request, error) {
	out := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, errors.New("request body cannot be sent again")
		}
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		out.Body = b
	}
	u := *req.URL
	u.Scheme, u.Host, u.User = base.Scheme, base.Host, nil
	if base.Path != "" {
		u.Path = base.Path + req.URL.Path
		u.RawPath = ""
		if req.URL.RawPath != "" {
			u.RawPath = base.EscapedPath() + req.URL.RawPath
		}
	}
	out.URL, out.Host = &u, ""
	if out.Header.Get("Authorization") == "" {
		switch {
		case t.apiKey != "":
			out.Header.Set("Authorization", "ApiKey "+t.apiKey)
		case t.username != "":
			out.SetBasicAuth(t.username, t.password)
		case base.User != nil:
			pw, _ := base.User.Password()
			out.SetBasicAuth(base.User.Username(), pw)
		}
	}
	if out.Header.Get("User-Agent") == "" {
		out.Header.Set("User-Agent", "enricher")
	}
	return out, nil
}

// notSent reports an error that happened before the request left: no connection could be
// opened.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
