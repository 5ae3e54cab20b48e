package main

// What other shapes of the compact object would cost the alert store, with every framework
// loaded: the alerts enricher wrote are copied into a fresh index with the same mapping,
// their root rewritten into each variant, and the copy's store after a force-merge is
// compared with the store before enrichment. These are the options of a decision between
// what the alert carries and what it costs (README "Performance"), measured in the run
// that measures the shape enricher writes.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/elastic"
)

var detailVariants = flag.Bool("detail-variants", true, "with the compact-shape figures, the store other shapes of the object would take")

// shapeVariant rewrites one alert's root (in place).
type shapeVariant struct {
	label string
	edit  func(root map[string]any)
}

// objects returns root[key] as a list of objects (nil when absent).
func objects(root map[string]any, key string) []map[string]any {
	xs, _ := root[key].([]any)
	out := make([]map[string]any, 0, len(xs))
	for _, x := range xs {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func withoutNames(root map[string]any) {
	for _, c := range objects(root, "controls") {
		delete(c, "name")
	}
	for _, d := range objects(root, "detections") {
		for _, a := range objects(d, "alerts") {
			delete(a, "name")
		}
	}
}

// keepControls keeps the control groups of the frameworks keep says yes to.
func keepControls(root map[string]any, keep func(framework string) bool) {
	var kept []any
	for _, c := range objects(root, "controls") {
		if fw, _ := c["framework"].(string); keep(fw) {
			kept = append(kept, c)
		}
	}
	root["controls"] = kept
}

var shapeVariants = []shapeVariant{
	{"as written (the copy, to compare the method)", func(map[string]any) {}},
	{"no control or product alert names", withoutNames},
	{"no CRI Profile controls", func(r map[string]any) { keepControls(r, func(fw string) bool { return fw != "cri_profile" }) }},
	{"NIST 800-53 controls only, no products", func(r map[string]any) {
		keepControls(r, func(fw string) bool { return fw == "nist_800_53" })
		delete(r, "detections")
	}},
	{"control IDs and product names only", func(r map[string]any) {
		withoutNames(r)
		delete(r, "frameworks")
		for _, c := range objects(r, "controls") {
			delete(c, "releases")
		}
		var ds []any
		for _, d := range objects(r, "detections") {
			ds = append(ds, map[string]any{"product": d["product"]})
		}
		r["detections"] = ds
	}},
	{"references only (techniques, details, status)", func(r map[string]any) {
		for k := range r {
			switch k {
			case enrich.FieldStatus, "techniques", enrich.FieldDetails, "ruleset", "enriched_at", "has_detection":
			default:
				delete(r, k)
			}
		}
	}},
}

// variantStores returns, for each shape variant, the store of index's alerts rewritten
// into it, after a force-merge.
func variantStores(ctx context.Context, c *elastic.Client, index string) ([]int64, error) {
	do := func(what, method, path string, q url.Values, body []byte) ([]byte, error) {
		code, resp, err := c.Do(ctx, "other", method, path, q, body)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d: %.300s", code, resp)
		}
		if err != nil {
			return nil, fmt.Errorf("shape variants: %s: %w", what, err)
		}
		return resp, nil
	}
	all := url.Values{"expand_wildcards": {"all"}}
	raw, err := do("mapping", http.MethodGet, "/"+url.PathEscape(index)+"/_mapping", all, nil)
	if err != nil {
		return nil, err
	}
	var mappings map[string]struct {
		Mappings json.RawMessage `json:"mappings"`
	}
	if err := json.Unmarshal(raw, &mappings); err != nil {
		return nil, fmt.Errorf("shape variants: mapping of %s: %w", index, err)
	}
	if len(mappings) != 1 {
		return nil, fmt.Errorf("shape variants: %s resolves to %d indices, want 1", index, len(mappings))
	}
	var mapping json.RawMessage
	for _, m := range mappings {
		mapping = m.Mappings
	}
	docs, err := allSources(ctx, do, index)
	if err != nil {
		return nil, err
	}
	const dst = "bench-shape-variant"
	defer deleteIndex(ctx, c, dst)
	var sizes []int64
	for _, v := range shapeVariants {
		deleteIndex(ctx, c, dst)
		create, _ := json.Marshal(map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0, "index.mapping.total_fields.limit": 3000},
			"mappings": mapping})
		if _, err := do("create "+dst, http.MethodPut, "/"+dst, nil, create); err != nil {
			return nil, err
		}
		var body bytes.Buffer
		flush := func() error {
			if body.Len() == 0 {
				return nil
			}
			resp, err := do("bulk", http.MethodPost, "/"+dst+"/_bulk", nil, body.Bytes())
			body.Reset()
			if err != nil {
				return err
			}
			var res struct {
				Errors bool `json:"errors"`
			}
			if err := json.Unmarshal(resp, &res); err != nil || res.Errors {
				return fmt.Errorf("shape variants: bulk: %v: %.300s", err, resp)
			}
			return nil
		}
		for i, d := range docs {
			var src map[string]any
			dec := json.NewDecoder(bytes.NewReader(d))
			dec.UseNumber() // numbers written back as they were read
			if err := dec.Decode(&src); err != nil {
				return nil, fmt.Errorf("shape variants: %w", err)
			}
			if root, ok := src[enrich.DefaultRoot].(map[string]any); ok {
				v.edit(root)
			}
			line, _ := json.Marshal(src)
			body.WriteString("{\"index\":{}}\n")
			body.Write(line)
			body.WriteByte('\n')
			if (i+1)%2000 == 0 {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		size, err := storeSize(ctx, c, dst, "")
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, size)
	}
	return sizes, nil
}

// allSources reads every document's _source of index, in index order.
func allSources(ctx context.Context, do func(what, method, path string, q url.Values, body []byte) ([]byte, error), index string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	q := url.Values{"scroll": {"1m"}, "expand_wildcards": {"all"}}
	resp, err := do("scroll", http.MethodPost, "/"+url.PathEscape(index)+"/_search", q, []byte(`{"size":5000,"sort":["_doc"]}`))
	for {
		if err != nil {
			return nil, err
		}
		var page struct {
			ScrollID string `json:"_scroll_id"`
			Hits     struct {
				Hits []struct {
					Source json.RawMessage `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(resp, &page); err != nil {
			return nil, fmt.Errorf("shape variants: scroll: %w", err)
		}
		if len(page.Hits.Hits) == 0 {
			do("clear scroll", http.MethodDelete, "/_search/scroll", nil, []byte(`{"scroll_id":"`+page.ScrollID+`"}`))
			return out, nil
		}
		for _, h := range page.Hits.Hits {
			out = append(out, h.Source)
		}
		body, _ := json.Marshal(map[string]string{"scroll": "1m", "scroll_id": page.ScrollID})
		resp, err = do("scroll", http.MethodPost, "/_search/scroll", nil, body)
	}
}
