package elastic

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// ErrUnavailable wraps errors that mean Elasticsearch could not be reached or answered
// 429/5xx for a whole request: worth retrying with backoff. It is runner.ErrUnavailable.
var ErrUnavailable = runner.ErrUnavailable

// ErrRefused wraps 400, 401 and 403 answers to a whole request: retrying the same
// request is useless. It is runner.ErrRefused.
var ErrRefused = runner.ErrRefused

// Client is a thin, instrumented client of Elasticsearch or OpenSearch, whichever answers
// (see opensearch.go): Elasticsearch through go-elasticsearch, OpenSearch through
// plainTransport, both built from the same configuration.
type Client struct {
	es      *elasticsearch.Client
	plain   *plainTransport
	m       *metrics.Metrics
	timeout time.Duration

	mu      sync.Mutex
	srv     *Server   // nil until detected
	perform performer // es or plain, once detected
}

// NewClient builds a client from config. m may be nil.
func NewClient(cfg config.Elasticsearch, m *metrics.Metrics) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read elasticsearch.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("elasticsearch.ca_file %s: no PEM certificates found", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    cfg.URLs,
		APIKey:       cfg.APIKey,
		Username:     cfg.Username,
		Password:     cfg.Password,
		Transport:    tr,
		DisableRetry: true, // retries are ours, per item, with backoff
	})
	if err != nil {
		return nil, fmt.Errorf("create elasticsearch client: %w", err)
	}
	plain, err := newPlainTransport(cfg, tr)
	if err != nil {
		return nil, err
	}
	t := cfg.RequestTimeout
	if t <= 0 {
		t = 30 * time.Second
	}
	return &Client{es: es, plain: plain, m: m, timeout: t}, nil
}

// Do sends one request and returns the status code and body. A transport error or a
// 429/5xx status is returned wrapped in ErrUnavailable; other statuses are the caller's.
// The first request of a Client detects the server (GET /, see opensearch.go).
func (c *Client) Do(ctx context.Context, op, method, path string, q url.Values, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	srv, err := c.server(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	body = srv.requestBody(method, path, body)
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		ct := "application/json"
		if op == "bulk" || strings.HasSuffix(path, "/_bulk") {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	c.mu.Lock()
	p := c.perform
	c.mu.Unlock()
	start := time.Now()
	res, err := p.Perform(req)
	if err != nil {
		c.observe(op, "error", start)
		return 0, nil, transportError(method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	c.observe(op, strconv.Itoa(res.StatusCode/100)+"xx", start)
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("%s %s: read body: %w: %w", method, path, ErrUnavailable, err)
	}
	if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
		return res.StatusCode, b, fmt.Errorf("%s %s: %w: status %d: %s", method, path, ErrUnavailable, res.StatusCode, errorReason(b))
	}
	return res.StatusCode, b, nil
}

// tlsRefusal says why a TLS handshake failed for a reason that retrying does not cure
// (a certificate not signed by a trusted CA, a host name the certificate does not name,
// an expired certificate, plain HTTP spoken to an HTTPS client), or "" for other errors.
func tlsRefusal(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &hostname):
		return "TLS: the server's certificate does not name the host in the URL (use a host name or IP address the certificate names)"
	case errors.As(err, &unknown):
		return "TLS: the server's certificate is not signed by a trusted CA (set elasticsearch.ca_file to the CA that signed it)"
	case errors.As(err, &invalid):
		return "TLS: the server's certificate is not valid (expired, or not for server use)"
	case errors.As(err, &verify):
		return "TLS: the server's certificate cannot be verified"
	case errors.As(err, &record):
		return "TLS: the server does not speak TLS on this port (check the URL's scheme and port)"
	}
	return ""
}

func (c *Client) observe(op, code string, start time.Time) {
	if c.m == nil {
		return
	}
	c.m.ESRequests.WithLabelValues(op, code).Inc()
	c.m.ESDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// snippet shortens a response body for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// statusError is an error status from Elasticsearch for a whole request: 400, 401 and
// 403 wrap ErrRefused (with the reason Elasticsearch gave, which names the privilege or
// the field), 429 and 5xx ErrUnavailable, others neither.
func statusError(what string, code int, body []byte) error {
	reason := errorReason(body)
	switch {
	case code == http.StatusUnauthorized:
		return fmt.Errorf("%s: %w: status 401 (authentication failed: check the API key or user): %s", what, ErrRefused, reason)
	case code == http.StatusForbidden:
		return fmt.Errorf("%s: %w: status 403 (a privilege is missing): %s", what, ErrRefused, reason)
	case code == http.StatusBadRequest:
		return fmt.Errorf("%s: %w: status 400: %s", what, ErrRefused, reason)
	case code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("%s: %w: status %d: %s", what, ErrUnavailable, code, reason)
	}
	return fmt.Errorf("%s: status %d: %s", what, code, reason)
}

// errorReason returns "type: reason" of an Elasticsearch error body (the root cause when
// there is one), or the body shortened.
func errorReason(body []byte) string {
	var e struct {
		Error struct {
			Type      string `json:"type"`
			Reason    string `json:"reason"`
			RootCause []struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"root_cause"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		t, r := e.Error.Type, e.Error.Reason
		if len(e.Error.RootCause) > 0 && e.Error.RootCause[0].Reason != "" {
			t, r = e.Error.RootCause[0].Type, e.Error.RootCause[0].Reason
		}
		return shorten(t+": "+r, 500)
	}
	return snippet(body)
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// joinIndices renders index patterns for a URL path.
func joinIndices(ix []string) string {
	parts := make([]string, len(ix))
	for i, s := range ix {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, ",")
}

// hiddenToo are the query parameters that let wildcards match hidden indices
// (Kibana's .internal.alerts-* backing indices are hidden).
func hiddenToo() url.Values {
	return url.Values{"expand_wildcards": {"open,hidden"}, "ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
}
