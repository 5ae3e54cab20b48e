package elastic

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich/config"
)

// TestCAFileAndAuth: https with a private CA from ca_file works; without it the
// certificate is refused; credentials reach the node as headers.
func TestCAFileAndAuth(t *testing.T) {
	var gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Write([]byte(`{"status":"green"}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		cfg      config.Elasticsearch
		wantErr  string
		wantAuth string
	}{
		{"api key and CA", config.Elasticsearch{APIKey: "a2V5", CAFile: ca}, "", "APIKey a2V5"},
		{"basic auth and CA", config.Elasticsearch{Username: "enricher", Password: "pw", CAFile: ca}, "", "Basic ZW5yaWNoZXI6cHc="},
		{"no CA", config.Elasticsearch{}, "not signed by a trusted CA (set elasticsearch.ca_file", ""},
		// httptest's certificate names 127.0.0.1, ::1 and example.com, not localhost.
		{"wrong host name", config.Elasticsearch{CAFile: ca, URLs: []string{strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)}},
			"does not name the host", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.URLs == nil {
				tc.cfg.URLs = []string{srv.URL}
			}
			tc.cfg.RequestTimeout = 5 * time.Second
			c, err := NewClient(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotAuth = ""
			code, _, err := c.Do(context.Background(), "other", http.MethodGet, "/_cluster/health", nil, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one about the %s", err, tc.wantErr)
				}
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("err = %v, want ErrRefused (retrying does not fix a certificate)", err)
				}
				return
			}
			if err != nil || code != 200 {
				t.Fatalf("%d %v", code, err)
			}
			if gotAuth != tc.wantAuth {
				t.Fatalf("Authorization %q, want %q", gotAuth, tc.wantAuth)
			}
		})
	}
	if _, err := NewClient(config.Elasticsearch{URLs: []string{srv.URL}, CAFile: filepath.Join(t.TempDir(), "none.pem")}, nil); err == nil ||
		!strings.Contains(err.Error(), "elasticsearch.ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}
}
