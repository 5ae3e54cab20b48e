package dashboards

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// A fake Kibana: no Kibana server runs here, so the import request is checked by what
// the saved-objects import API documents (multipart "file", kbn-xsrf, overwrite=true,
// /s/<space> prefix) and the answers it gives.
func TestImportKibana(t *testing.T) {
	var paths, auths []string
	var sizes []int
	refuse := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("kbn-xsrf") == "" {
			http.Error(w, `{"statusCode":400,"message":"Request must contain a kbn-xsrf header."}`, 400)
			return
		}
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		b, _ := io.ReadAll(f)
		paths = append(paths, r.URL.Path+"?"+r.URL.RawQuery)
		auths = append(auths, r.Header.Get("Authorization"))
		sizes = append(sizes, len(b))
		if refuse {
			w.Write([]byte(`{"success":false,"successCount":3,"errors":[{"id":"enricher-x","type":"lens","error":{"type":"missing_references"}}]}`))
			return
		}
		w.Write([]byte(`{"success":true,"successCount":` + strconv.Itoa(strings.Count(string(b), "\n")) + `}`))
	}))
	defer srv.Close()

	res, err := ImportKibana(context.Background(), srv.Client(), srv.URL+"/", "soc", KibanaAuth{APIKey: "a2V5"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(KibanaFiles) || res[0].Objects == 0 {
		t.Fatalf("results %+v", res)
	}
	if paths[0] != "/s/soc/api/saved_objects/_import?overwrite=true" || auths[0] != "ApiKey a2V5" || sizes[0] == 0 {
		t.Fatalf("request %s auth %q size %d", paths[0], auths[0], sizes[0])
	}
	paths, auths = nil, nil
	if _, err := ImportKibana(context.Background(), srv.Client(), srv.URL, "default", KibanaAuth{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if paths[0] != "/api/saved_objects/_import?overwrite=true" || !strings.HasPrefix(auths[0], "Basic ") {
		t.Fatalf("default space: %s %q", paths[0], auths[0])
	}
	refuse = true
	_, err = ImportKibana(context.Background(), srv.Client(), srv.URL, "", KibanaAuth{})
	if err == nil || !strings.Contains(err.Error(), "kibana/alerts.ndjson") || !strings.Contains(err.Error(), "lens enricher-x (missing_references)") {
		t.Fatalf("refused objects: %v", err)
	}
	if _, err := ImportKibana(context.Background(), srv.Client(), "kibana:5601", "", KibanaAuth{}); err == nil || !strings.Contains(err.Error(), "want http(s)://") {
		t.Fatalf("bad URL: %v", err)
	}
}
