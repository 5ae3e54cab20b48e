package dashboards

import (
	"reflect"
	"strings"
	"testing"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
)

func TestDecodeRison(t *testing.T) {
	for in, want := range map[string]any{
		`(a:1,b:'x y',c:!(!t,!f,!n),d:(),e:!())`: map[string]any{"a": 1.0, "b": "x y", "c": []any{true, false, nil}, "d": map[string]any{}, "e": []any{}},
		`'it!'s!!'`:                              "it's!",
		`(q:'f : "v"',id:abc-1.2_x)`:             map[string]any{"q": `f : "v"`, "id": "abc-1.2_x"},
		`-2.5e3`:                                 -2500.0,
		`('a b':x)`:                              map[string]any{"a b": "x"},
	} {
		got, err := DecodeRison(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", in, got, want)
		}
	}
	for _, in := range []string{``, `(a:1`, `'x`, `'a!x'`, `(a)`, `!x`, `(a:1)x`, `a@b`, `(1:2)`} {
		if v, err := DecodeRison(in); err == nil {
			t.Errorf("%s: want an error, got %#v", in, v)
		}
	}
}

func TestEncodeURIComponent(t *testing.T) {
	for in, want := range map[string]string{
		"T1021.002@4ae3478e832a": "T1021.002%404ae3478e832a",
		`a b"c&d#e/f?g%h`:        "a%20b%22c%26d%23e%2Ff%3Fg%25h",
		"-_.!~*'()":              "-_.!~*'()",
		"é":                      "%C3%A9",
	} {
		if got := EncodeURIComponent(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// TestKibanaHref follows the branches of UrlFormat's relative-URL handling.
func TestKibanaHref(t *testing.T) {
	const o = "https://k:5601"
	for _, tc := range []struct{ url, basePath, want string }{
		{"https://x/y", "/s/a", "https://x/y"},
		{"mailto:a@b", "", "mailto:a@b"},
		{"#/view/x", "/s/a", o + "/s/a/app/discover#/view/x"},
		{"discover#/view/x", "", o + "/app/discover#/view/x"},
		{"discover#/view/x", "/kbn/s/a", o + "/kbn/s/a/app/discover#/view/x"},
		{"/app/discover#/view/x", "", o + "/app/discover#/view/x"},
		{"/s/a/app/discover#/view/x", "/s/a", o + "/s/a/app/discover#/view/x"},
		// A leading slash without the base path: Kibana prefixes <basePath>/app.
		{"/app/discover#/view/x", "/s/a", o + "/s/a/app/app/discover#/view/x"},
	} {
		got, ok := KibanaHref(tc.url, o, tc.basePath, tc.basePath+"/app/discover")
		if !ok || got != tc.want {
			t.Errorf("%q under %q: got %q (%v), want %q", tc.url, tc.basePath, got, ok, tc.want)
		}
	}
}

func TestParseDiscoverLink(t *testing.T) {
	d, err := ParseDiscoverLink("https://k/kbn/app/discover#/view/my%2Dsearch?_g=(time:(from:now-1h,to:now))&_a=(columns:!(a,'b c'),query:(language:kuery,query:'x%20:%20%22T1%401%22'),sort:!(!(a,asc)))", "/kbn")
	if err != nil {
		t.Fatal(err)
	}
	if d.SavedSearch != "my-search" {
		t.Errorf("saved search %q", d.SavedSearch)
	}
	if lang, q, err := d.Query(); err != nil || lang != "kuery" || q != `x : "T1@1"` {
		t.Errorf("query %q %q %v", lang, q, err)
	}
	if want := []any{"a", "b c"}; !reflect.DeepEqual(d.AppState["columns"], want) {
		t.Errorf("columns %#v", d.AppState["columns"])
	}
	if tm, _ := d.GlobalState["time"].(map[string]any); tm["from"] != "now-1h" {
		t.Errorf("_g %#v", d.GlobalState)
	}
	for _, bad := range []string{
		"https://k/app/discover#/view/x", // no base path
		"https://k/kbn/app/dashboards#/view/x",
		"https://k/kbn/app/discover#/edit/x",
		"https://k/kbn/app/discover#/view/x?_a=(query:'x)",
		"https://k/kbn/app/discover#/view/x?_a=!(1)",
	} {
		if _, err := ParseDiscoverLink(bad, "/kbn"); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

// TestKibanaDetailsObjects checks the mapping-details objects without a server: the
// data view over the detail index, the saved search, and the link on both alert data
// views, which for a real reference renders the Discover URL expected in a space.
func TestKibanaDetailsObjects(t *testing.T) {
	objs := loadKibana(t)
	views, _, queries, errs := Plan(objs)
	if len(errs) > 0 {
		t.Fatalf("saved objects: %v", errs)
	}
	var details *DataView
	for _, dv := range views {
		if dv.Title == config.DefaultDetailsIndex {
			d := dv
			details = &d
		}
	}
	if details == nil {
		t.Fatalf("no data view titled %s", config.DefaultDetailsIndex)
	}
	if details.TimeField != "" || details.AllowHidden || len(details.Links) > 0 {
		t.Errorf("details data view: time field %q, allowHidden %v, links %v: want none", details.TimeField, details.AllowHidden, details.Links)
	}
	schema := map[string]string{}
	for _, f := range enrich.DetailSchema {
		schema[f.Path] = f.Type
	}
	for f := range details.Labels {
		if typ, ok := schema[f]; !ok || typ == enrich.TypeObject || typ == enrich.TypeObjectArr {
			t.Errorf("details data view labels %s, not a leaf of enrich.DetailSchema", f)
		}
	}
	alertFields := map[string]bool{}
	for _, f := range enrich.Schema {
		alertFields[enrich.DefaultRoot+"."+f.Path] = f.Type != enrich.TypeObject && f.Type != enrich.TypeObjectArr
	}
	var search *Query
	for i, q := range queries {
		if q.DataView == details.ID && len(q.Buckets) == 0 {
			search = &queries[i]
		}
	}
	if search == nil || len(search.Sort) == 0 {
		t.Fatalf("no sorted saved search over the details data view: %+v", search)
	}
	linked := 0
	for _, dv := range views {
		if dv.TimeField != "@timestamp" {
			continue
		}
		for f := range dv.Labels {
			if strings.HasPrefix(f, enrich.DefaultRoot+".") && !alertFields[f] {
				t.Errorf("%s labels %s, not a leaf of enrich.Schema", dv.ID, f)
			}
		}
		for _, l := range dv.Links {
			if l.Field != enrich.DefaultRoot+"."+enrich.FieldDetails {
				continue
			}
			linked++
			if l.Target != details.ID || "search/"+l.SavedSearch != search.Object {
				t.Errorf("%s: %s links to %s on %s, want %s on %s", dv.ID, l.Field, l.SavedSearch, l.Target, search.Object, details.ID)
			}
			const ref = "T1021.002@4ae3478e832a"
			href, ok := KibanaHref(l.ExpandURL(ref), "https://kibana:5601", "/s/soc", "/s/soc/app/security/alerts")
			want := "https://kibana:5601/s/soc/app/discover#/view/" + l.SavedSearch +
				"?_a=(query:(language:kuery,query:'ref%20:%20%22T1021.002%404ae3478e832a%22'))"
			if !ok || href != want {
				t.Errorf("%s: link for %s is %q, want %q", dv.ID, ref, href, want)
			}
			if got := l.ExpandLabel(ref); got != ref {
				t.Errorf("%s: link text %q, want the reference", dv.ID, got)
			}
		}
	}
	if linked != 2 {
		t.Errorf("want the details link on both alert data views, found %d", linked)
	}
}
