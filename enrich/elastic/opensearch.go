package elastic

// Elasticsearch and OpenSearch: everything enricher does differently on one than on the
// other is in this file. The rest of the package speaks the REST API the two share
// (search, _bulk with if_seq_no/if_primary_term, _mget, _mapping, _resolve/index, index
// templates, hidden indices and aliases), through Client.Do.
//
// The server is detected, not configured: the first request of a Client is preceded by
// GET /. Elasticsearch marks every answer (errors included) with X-Elastic-Product:
// Elasticsearch; OpenSearch names itself in the body, version.distribution "opensearch".
// Elasticsearch is then spoken to through go-elasticsearch, OpenSearch through
// plainTransport (net/http; go-elasticsearch refuses any server that does not send
// Elasticsearch's product header).
//
// The differences handled (found on OpenSearch 2.19; the suites pass on 3.3 too):
//
//   - Point in time. Elasticsearch: POST /<indices>/_pit?keep_alive= answers {"id"}, and
//     DELETE /_pit {"id"} closes it. OpenSearch: POST /<indices>/_search/point_in_time
//     answers {"pit_id"}, DELETE /_search/point_in_time {"pit_id":[…]} closes it. The
//     search body ("pit":{"id","keep_alive"}) and the pit_id of search answers are the same.
//   - A point in time over no index (patterns that match nothing yet). Elasticsearch opens
//     an empty one; OpenSearch 2.19 answers 400 "invalid id: [null]": a scan with nothing
//     to read.
//   - The tiebreaker of search_after within a point in time. Elasticsearch: _shard_doc,
//     unique within the point in time. OpenSearch 2.x has no _shard_doc, and 3.3's is not
//     unique across indices (see pitTiebreaker): the value to sort on is _id, loaded as
//     field data on the node's heap, the price OpenSearch asks for a stable order (the node
//     setting indices.id_field_data.enabled must stay on, its default).
//   - The flattened field type (plugin namespaces, Kibana's rule parameters) is flat_object
//     on OpenSearch, which takes no parameters (ignore_above and the like are dropped) and
//     is searchable by term and exists queries on its subfields (on 2.19 a terms
//     aggregation on a subfield finds no buckets). Mappings, index creations and index
//     templates are rewritten on the way out.
//   - Detection itself. An answer to GET / with neither the product header nor a
//     distribution is taken for Elasticsearch when it is 200 (go-elasticsearch then judges
//     it, as before), is no answer when it is 429 or 5xx (a proxy whose node is down: GET /
//     is sent again with the next request), and is taken for OpenSearch otherwise (a 401 or
//     403 from OpenSearch's security plugin, whose 401 body is plain text "Unauthorized",
//     since Elasticsearch would have sent its header). Neither server needs a privilege for
//     this: a refused GET / says which it is.
//
// What is the same and needs nothing: error bodies ({"error":{"type","reason",
// "root_cause"}}, "status") and statuses (409 version conflicts, 404, 413, 429
// circuit_breaking_exception, cluster_block_exception, the fields limit message), _bulk
// item fields (status, _seq_no, _primary_term, error), expand_wildcards=open,hidden and
// index.hidden, is_hidden aliases, _resolve/index, filter_path on _mapping, the "missing"
// and "unmapped_type" sort options.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Distributions a Server can be.
const (
	DistributionElasticsearch = "elasticsearch"
	DistributionOpenSearch    = "opensearch"
)

// Server is what a Client learned of the cluster at its first request.
type Server struct {
	// Distribution is DistributionElasticsearch or DistributionOpenSearch.
	Distribution string
	// Version is version.number of GET /, "" when it could not be read.
	Version string
}

// OpenSearch reports an OpenSearch cluster.
func (s Server) OpenSearch() bool { return s.Distribution == DistributionOpenSearch }

func (s Server) String() string {
	name := "Elasticsearch"
	if s.OpenSearch() {
		name = "OpenSearch"
	}
	if s.Version == "" {
		return name
	}
	return name + " " + s.Version
}

// detect reads the answer to GET /. decided is false when the answer says nothing yet (a
// proxy's 429/5xx: ask again at the next request).
func detect(code int, header http.Header, body []byte) (s Server, decided bool) {
	var root struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	_ = json.Unmarshal(body, &root)
	switch {
	case strings.EqualFold(root.Version.Distribution, DistributionOpenSearch):
		return Server{Distribution: DistributionOpenSearch, Version: root.Version.Number}, true
	case header.Get("X-Elastic-Product") == "Elasticsearch":
		return Server{Distribution: DistributionElasticsearch, Version: root.Version.Number}, true
	case code >= 200 && code < 300:
		return Server{Distribution: DistributionElasticsearch, Version: root.Version.Number}, true
	case (code == http.StatusUnauthorized || code == http.StatusForbidden) &&
		(strings.Contains(header.Get("WWW-Authenticate"), "OpenSearch") || bytes.Contains(body, []byte("security_exception"))):
		// OpenSearch's security plugin: its realm, or its refusal without Elastic's header.
		return Server{Distribution: DistributionOpenSearch}, true
	}
	// A proxy's answer (3xx, 404 while a route is not ready, 429, 5xx) or an
	// authentication in front of the store says nothing about the server: undecided,
	// asked again at the next request, never cached.
	return Server{}, false
}

// undecidedError is the error of a GET / that did not say which server it is.
func undecidedError(code int, body []byte) error {
	cls := ErrUnavailable
	switch {
	case code == http.StatusNotFound || code == http.StatusTooManyRequests || code >= 500:
	default: // 3xx, 400, 401, 403, 407: the same answer again, until someone acts
		cls = ErrRefused
	}
	return fmt.Errorf("GET / (which server is it?): %w: status %d: %s", cls, code, errorReason(body))
}

// Server returns the detected server, detecting it first if no request has yet.
func (c *Client) Server(ctx context.Context) (Server, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.server(ctx)
}

// server detects the server once (GET / through plainTransport, which talks to both) and
// picks what to send the following requests through.
func (c *Client) server(ctx context.Context) (Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		return *c.srv, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return Server{}, err
	}
	start := time.Now()
	res, err := c.plain.Perform(req)
	if err != nil {
		c.observe("other", "error", start)
		return Server{}, transportError(http.MethodGet, "/", err)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	c.observe("other", strconv.Itoa(res.StatusCode/100)+"xx", start)
	if err != nil {
		return Server{}, fmt.Errorf("GET /: read body: %w: %w", ErrUnavailable, err)
	}
	s, ok := detect(res.StatusCode, res.Header, b)
	if !ok {
		return Server{}, undecidedError(res.StatusCode, b)
	}
	c.srv = &s
	c.perform = c.es
	if s.OpenSearch() {
		c.perform = c.plain
	}
	return s, nil
}

// detected is the server once detected (Elasticsearch before: nothing depends on it then).
func (c *Client) detected() Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv == nil {
		return Server{Distribution: DistributionElasticsearch}
	}
	return *c.srv
}

// openPIT opens a point in time over indices (hidden ones included). It returns "" when
// the patterns match no index and the server cannot open a point in time over nothing.
func (c *Client) openPIT(ctx context.Context, indices []string, keepAliveFor time.Duration) (string, error) {
	srv, err := c.server(ctx)
	if err != nil {
		return "", fmt.Errorf("open point in time: %w", err)
	}
	path := "/" + joinIndices(indices) + "/_pit"
	if srv.OpenSearch() {
		path = "/" + joinIndices(indices) + "/_search/point_in_time"
	}
	q := hiddenToo()
	q.Set("keep_alive", keepAlive(keepAliveFor))
	if srv.OpenSearch() {
		// OpenSearch would otherwise open it over the shards it can reach, and a scan
		// would miss the others' alerts without a word.
		q.Set("allow_partial_pit_creation", "false")
	}
	code, body, err := c.Do(ctx, "pit_open", http.MethodPost, path, q, nil)
	if err != nil {
		return "", fmt.Errorf("open point in time: %w", err)
	}
	if srv.OpenSearch() && code == http.StatusBadRequest && bytes.Contains(body, []byte("invalid id: [null]")) {
		return "", nil // OpenSearch 2.x: no index matches
	}
	if code != http.StatusOK {
		return "", statusError("open point in time over "+joinIndices(indices), code, body)
	}
	var pit struct {
		ID    string `json:"id"`
		PitID string `json:"pit_id"`
	}
	_ = json.Unmarshal(body, &pit)
	id := pit.ID
	if srv.OpenSearch() {
		id = pit.PitID
	}
	if id == "" {
		return "", fmt.Errorf("decode point in time: %w: %s", ErrUnavailable, snippet(body))
	}
	return id, nil
}

// closePIT closes a point in time, best effort (it expires by itself).
func (c *Client) closePIT(ctx context.Context, id string) {
	path, b := "/_pit", []byte(nil)
	if c.detected().OpenSearch() {
		path = "/_search/point_in_time"
		b, _ = json.Marshal(map[string][]string{"pit_id": {id}})
	} else {
		b, _ = json.Marshal(map[string]string{"id": id})
	}
	_, _, _ = c.Do(ctx, "pit_close", http.MethodDelete, path, nil, b)
}

// pitTiebreaker is the last sort clause of a search in a point in time: a value unique to
// each document of the point in time, so that search_after neither skips nor repeats
// alerts that share a time. OpenSearch's _shard_doc (3.3 and later) is not one: it is made
// of the shard's number within its index, so shard 0 of two indices (a rolled-over alias)
// gives equal values (TestScanTiesAcrossShards loses alerts with it on 3.3.2).
func (c *Client) pitTiebreaker() map[string]any {
	if c.detected().OpenSearch() {
		return map[string]any{"_id": "asc"}
	}
	return map[string]any{"_shard_doc": "asc"}
}

// requestBody adapts a request body to the server: on OpenSearch the flattened fields of
// mappings (put mapping, index creation, index and component templates) become flat_object.
func (s Server) requestBody(method, path string, body []byte) []byte {
	if !s.OpenSearch() || len(body) == 0 || !bytes.Contains(body, []byte(`"flattened"`)) || !mappingRequest(method, path) {
		return body
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return body
	}
	out, err := json.Marshal(flatObjects(v))
	if err != nil {
		return body
	}
	return out
}

// mappingRequest reports a request whose body carries mappings.
func mappingRequest(method, path string) bool {
	if method != http.MethodPut && method != http.MethodPost {
		return false
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) == 2 && (segs[0] == "_index_template" || segs[0] == "_component_template" || segs[0] == "_template"):
		return true
	case len(segs) == 2 && (segs[1] == "_mapping" || segs[1] == "_mappings"):
		return true
	case len(segs) == 1 && segs[0] != "" && !strings.HasPrefix(segs[0], "_"):
		return method == http.MethodPut // index creation
	}
	return false
}

// flatObjects replaces every field mapping of type flattened with flat_object.
func flatObjects(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["type"].(string); ok && t == "flattened" {
			return map[string]any{"type": "flat_object"}
		}
		for k, e := range x {
			x[k] = flatObjects(e)
		}
	case []any:
		for i, e := range x {
			x[i] = flatObjects(e)
		}
	}
	return v
}

// transportError wraps an error of a request that got no answer: ErrRefused for a TLS
// failure that retrying does not cure, ErrUnavailable otherwise.
func transportError(method, path string, err error) error {
	if msg := tlsRefusal(err); msg != "" {
		return fmt.Errorf("%s %s: %w: %s: %w", method, path, ErrRefused, msg, err)
	}
	return fmt.Errorf("%s %s: %w: %w", method, path, ErrUnavailable, err)
}
