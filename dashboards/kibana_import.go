package dashboards

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
)

//go:embed kibana/alerts.ndjson kibana/coverage.ndjson
var kibanaFiles embed.FS

// KibanaFiles are the saved-object files `enricher setup --kibana-url` imports, in order.
var KibanaFiles = []string{"kibana/alerts.ndjson", "kibana/coverage.ndjson"}

// KibanaAuth is how to authenticate to Kibana: an API key, or a user.
type KibanaAuth struct {
	APIKey             string
	Username, Password string
}

// ImportResult is what Kibana said of one file.
type ImportResult struct {
	File    string
	Objects int
}

// maxImportAnswer bounds the answer read from Kibana.
const maxImportAnswer = 4 << 20

// ImportKibana imports every file of KibanaFiles with the saved-objects import API
// (overwrite=true: object IDs all start with enricher-, so a second import updates them in
// place) into space ("" or "default": the default space). An error names the file and
// the objects Kibana refused.
func ImportKibana(ctx context.Context, hc *http.Client, kibanaURL, space string, auth KibanaAuth) ([]ImportResult, error) {
	base, err := url.Parse(strings.TrimRight(kibanaURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("kibana url %q: want http(s)://host:port", kibanaURL)
	}
	p := "/api/saved_objects/_import"
	if space != "" && space != "default" {
		p = "/s/" + url.PathEscape(space) + p
	}
	endpoint := base.JoinPath(p)
	endpoint.RawQuery = "overwrite=true"
	var out []ImportResult
	for _, f := range KibanaFiles {
		data, err := kibanaFiles.ReadFile(f)
		if err != nil {
			return out, err
		}
		n, err := importOne(ctx, hc, endpoint.String(), path.Base(f), data, auth)
		if err != nil {
			return out, fmt.Errorf("import %s into Kibana: %w", f, err)
		}
		out = append(out, ImportResult{File: f, Objects: n})
	}
	return out, nil
}

func importOne(ctx context.Context, hc *http.Client, endpoint, name string, data []byte, auth KibanaAuth) (int, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		return 0, err
	}
	fw.Write(data)
	if err := mw.Close(); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("kbn-xsrf", "enricher")
	switch {
	case auth.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+auth.APIKey)
	case auth.Username != "":
		req.SetBasicAuth(auth.Username, auth.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxImportAnswer))
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %.300s", resp.StatusCode, answer)
	}
	var r struct {
		Success      bool `json:"success"`
		SuccessCount int  `json:"successCount"`
		Errors       []struct {
			ID    string `json:"id"`
			Type  string `json:"type"`
			Error struct {
				Type string `json:"type"`
			} `json:"error"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(answer, &r); err != nil {
		return 0, fmt.Errorf("not a saved-objects import answer: %.300s", answer)
	}
	if !r.Success || len(r.Errors) > 0 {
		var refused []string
		for _, e := range r.Errors {
			refused = append(refused, fmt.Sprintf("%s %s (%s)", e.Type, e.ID, e.Error.Type))
		}
		return r.SuccessCount, fmt.Errorf("%d objects imported, refused: %s", r.SuccessCount, strings.Join(refused, ", "))
	}
	return r.SuccessCount, nil
}
