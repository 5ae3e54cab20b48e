package dashboards

// Kibana's URL field format and Discover links, as the tests check them: a data view's
// fieldFormatMap can turn a field's values into links; the alert data views link
// <root>.details values to the mapping-details saved search. These helpers expand a
// link template the way Kibana's UrlFormat does, resolve it against a Kibana base URL
// the way its HTML converter does, and read back what Discover would open (saved
// search, app state decoded from rison), so that the links are checked against the
// saved objects and a real Elasticsearch instead of being trusted.

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// FieldFormat is one entry of a data view's fieldFormatMap.
type FieldFormat struct {
	ID     string         `json:"id"`
	Params map[string]any `json:"params"`
}

// Link is a URL field format ("url", type "a") whose template opens Discover on a saved
// search of the same file, with a KQL query built from the field's value.
type Link struct {
	DataView, Field string // the data view whose fieldFormatMap holds the format, and the field
	URLTemplate     string
	LabelTemplate   string
	SavedSearch     string // ID of the search object the link opens
	Target          string // that search's data view

	query Query // the link's query for ProbeValue
}

// urlTemplateRE is UrlFormat's template placeholder: {{name}}, the name trimmed.
var urlTemplateRE = regexp.MustCompile(`{{([\s\S]+?)}}`)

// expandTemplate fills {{name}} placeholders from locals; an unknown name expands to
// nothing, as in Kibana's UrlFormat.compileTemplate.
func expandTemplate(tmpl string, locals map[string]string) string {
	return urlTemplateRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		return locals[strings.TrimSpace(m[2:len(m)-2])]
	})
}

// ExpandURL is the URL Kibana's UrlFormat makes of a value: {{value}} is the value
// encoded with encodeURIComponent, {{rawValue}} the value as it is.
func (l Link) ExpandURL(value string) string {
	return expandTemplate(l.URLTemplate, map[string]string{"value": EncodeURIComponent(value), "rawValue": value})
}

// ExpandLabel is the link text: the label template with {{value}} (not encoded) and
// {{url}}, or the URL itself without a label template.
func (l Link) ExpandLabel(value string) string {
	u := l.ExpandURL(value)
	if l.LabelTemplate == "" {
		return u
	}
	return expandTemplate(l.LabelTemplate, map[string]string{"value": value, "url": u})
}

// EncodeURIComponent is JavaScript's encodeURIComponent: everything but
// A-Z a-z 0-9 - _ . ! ~ * ' ( ) is percent-encoded as UTF-8.
func EncodeURIComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// KibanaHref is the href Kibana's UrlFormat (type "a") renders for a formatted URL in
// a Kibana served at origin under basePath (the server base path and the space's
// /s/<id>, as core.http.basePath.get() returns it) on page pathname. http(s) and
// mailto URLs are kept; a relative one is resolved: "#..." against the page,
// "<basePath>/..." against the origin, anything else against <basePath>/app/. It
// returns false where Kibana shows no link.
func KibanaHref(u, origin, basePath, pathname string) (string, bool) {
	for _, scheme := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(u, scheme) {
			return u, true
		}
	}
	if u == "" {
		return "", false
	}
	bp := basePath
	if bp == "" {
		bp = "/"
	}
	switch {
	case u[0] == '#':
		return origin + pathname + u, true
	case strings.HasPrefix(u, bp):
		return origin + u, true
	case u[0] == '/':
		return origin + basePath + "/app" + u, true
	default:
		return origin + basePath + "/app/" + u, true
	}
}

// DiscoverLink is what a Discover URL opens.
type DiscoverLink struct {
	SavedSearch string         // from #/view/<id>; "" for a new search
	AppState    map[string]any // _a, decoded from rison
	GlobalState map[string]any // _g, decoded from rison
}

// Query returns the app state's query: its language and text.
func (d DiscoverLink) Query() (language, text string, err error) {
	q, ok := d.AppState["query"].(map[string]any)
	if !ok {
		return "", "", fmt.Errorf("_a has no query object")
	}
	language, _ = q["language"].(string)
	text, ok = q["query"].(string)
	if !ok {
		return "", "", fmt.Errorf("_a.query.query is not a string")
	}
	return language, text, nil
}

// ParseDiscoverLink reads an absolute Discover URL, <origin><basePath>/app/discover#/
// [view/<id>][?_a=(…)&_g=(…)], as Discover reads it: the state lives in the query of
// the hash, each parameter URL-decoded and then rison-decoded.
func ParseDiscoverLink(href, basePath string) (DiscoverLink, error) {
	var d DiscoverLink
	// The hash is everything after the first #, as the browser and Node's url.parse take it.
	base, frag, _ := strings.Cut(href, "#")
	u, err := url.Parse(base)
	if err != nil {
		return d, err
	}
	if want := basePath + "/app/discover"; u.Path != want || u.RawQuery != "" {
		return d, fmt.Errorf("%s: path %q is not Discover's %q", href, u.Path+u.RawQuery, want)
	}
	hashPath, hashQuery, _ := strings.Cut(frag, "?")
	switch {
	case hashPath == "/" || hashPath == "":
	case strings.HasPrefix(hashPath, "/view/"):
		id, err := url.PathUnescape(strings.TrimPrefix(hashPath, "/view/"))
		if err != nil || id == "" || strings.Contains(id, "/") {
			return d, fmt.Errorf("%s: bad saved search in #%s", href, hashPath)
		}
		d.SavedSearch = id
	default:
		return d, fmt.Errorf("%s: #%s is not a Discover route (#/ or #/view/<id>)", href, hashPath)
	}
	params, err := url.ParseQuery(hashQuery)
	if err != nil {
		return d, fmt.Errorf("%s: hash query: %w", href, err)
	}
	for key, dst := range map[string]*map[string]any{"_a": &d.AppState, "_g": &d.GlobalState} {
		vs := params[key]
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return d, fmt.Errorf("%s: %s given %d times", href, key, len(vs))
		}
		v, err := DecodeRison(vs[0])
		if err != nil {
			return d, fmt.Errorf("%s: %s: %w", href, key, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return d, fmt.Errorf("%s: %s is not a rison object", href, key)
		}
		*dst = m
	}
	return d, nil
}

// DecodeRison decodes one rison value (https://github.com/Nanonid/rison, as Kibana's
// @kbn/rison reads it): objects (k:v,…), arrays !(…), !t !f !n, 'strings' with !' and
// !! escapes, numbers, and bare identifiers. Objects decode to map[string]any, arrays
// to []any, numbers to float64.
func DecodeRison(s string) (any, error) {
	p := &risonParser{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.s) {
		return nil, fmt.Errorf("rison %q: extra text at %d", s, p.i)
	}
	return v, nil
}

type risonParser struct {
	s string
	i int
}

// notIDChar are the characters a bare rison identifier cannot hold.
const notIDChar = " '!:(),*@$"

func (p *risonParser) errf(f string, a ...any) error {
	return fmt.Errorf("rison %q at %d: %s", p.s, p.i, fmt.Sprintf(f, a...))
}

func (p *risonParser) value() (any, error) {
	if p.i >= len(p.s) {
		return nil, p.errf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '(':
		p.i++
		obj := map[string]any{}
		for first := true; ; first = false {
			if p.i >= len(p.s) {
				return nil, p.errf("unterminated object")
			}
			if p.s[p.i] == ')' {
				p.i++
				return obj, nil
			}
			if !first {
				if p.s[p.i] != ',' {
					return nil, p.errf("want , or ) in object")
				}
				p.i++
			}
			k, err := p.value()
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, p.errf("object key %v is not a string", k)
			}
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, p.errf("want : after key %q", key)
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			obj[key] = v
		}
	case c == '!':
		if p.i+1 >= len(p.s) {
			return nil, p.errf("lone !")
		}
		p.i += 2
		switch p.s[p.i-1] {
		case 't':
			return true, nil
		case 'f':
			return false, nil
		case 'n':
			return nil, nil
		case '(':
			arr := []any{}
			for first := true; ; first = false {
				if p.i >= len(p.s) {
					return nil, p.errf("unterminated array")
				}
				if p.s[p.i] == ')' {
					p.i++
					return arr, nil
				}
				if !first {
					if p.s[p.i] != ',' {
						return nil, p.errf("want , or ) in array")
					}
					p.i++
				}
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
		}
		return nil, p.errf("unknown !%c", p.s[p.i-1])
	case c == '\'':
		p.i++
		var b strings.Builder
		for {
			if p.i >= len(p.s) {
				return nil, p.errf("unterminated string")
			}
			ch := p.s[p.i]
			p.i++
			switch ch {
			case '\'':
				return b.String(), nil
			case '!':
				if p.i >= len(p.s) || (p.s[p.i] != '!' && p.s[p.i] != '\'') {
					return nil, p.errf("bad escape in string")
				}
				b.WriteByte(p.s[p.i])
				p.i++
			default:
				b.WriteByte(ch)
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		j := p.i + 1
		for j < len(p.s) && strings.IndexByte("0123456789.eE+-", p.s[j]) >= 0 {
			j++
		}
		f, err := strconv.ParseFloat(p.s[p.i:j], 64)
		if err != nil {
			return nil, p.errf("bad number %q", p.s[p.i:j])
		}
		p.i = j
		return f, nil
	default:
		j := p.i
		for j < len(p.s) && strings.IndexByte(notIDChar, p.s[j]) < 0 {
			j++
		}
		if j == p.i {
			return nil, p.errf("unexpected %q", c)
		}
		id := p.s[p.i:j]
		p.i = j
		return id, nil
	}
}

// ProbeValue is the value Plan expands link templates with: shaped like a details
// reference, with characters that must survive the trip (percent-encoding, rison, KQL).
const ProbeValue = "T0000.000@0123456789ab"

// probeOrigin and probeBasePath are the Kibana a link is resolved in when checked: a
// server base path and a space, where relative links are easiest to break.
const (
	probeOrigin   = "https://kibana.example:5601"
	probeBasePath = "/kbn/s/soc"
)

// Resolve turns the link for one value into the query Discover would run: the URL is
// expanded, resolved in a Kibana without a base path and in one under a base path and
// a space (both must open the same search with the same query), read back as Discover
// reads it, and its KQL parsed. searches maps search IDs to their data views. The
// query's Object is the search it opens, its Title the KQL text.
func (l Link) Resolve(value string, searches map[string]string) (Query, error) {
	var out Query
	for i, bp := range []string{"", probeBasePath} {
		q, err := l.resolveIn(value, bp, searches)
		if err != nil {
			return Query{}, err
		}
		if i == 0 {
			out = q
		} else if q.Object != out.Object || q.Title != out.Title {
			return Query{}, fmt.Errorf("under base path %s the link opens %s %q, without one %s %q", bp, q.Object, q.Title, out.Object, out.Title)
		}
	}
	return out, nil
}

func (l Link) resolveIn(value, basePath string, searches map[string]string) (Query, error) {
	u := l.ExpandURL(value)
	href, ok := KibanaHref(u, probeOrigin, basePath, basePath+"/app/discover")
	if !ok {
		return Query{}, fmt.Errorf("Kibana renders no link for %q", u)
	}
	d, err := ParseDiscoverLink(href, basePath)
	if err != nil {
		return Query{}, err
	}
	if d.SavedSearch == "" {
		return Query{}, fmt.Errorf("%s opens no saved search", href)
	}
	dv, ok := searches[d.SavedSearch]
	if !ok {
		return Query{}, fmt.Errorf("%s opens search %q, not in the file", href, d.SavedSearch)
	}
	if idx, ok := d.AppState["index"]; ok && idx != dv {
		return Query{}, fmt.Errorf("%s: _a.index %v is not the search's data view %s", href, idx, dv)
	}
	lang, text, err := d.Query()
	if err != nil {
		return Query{}, fmt.Errorf("%s: %w", href, err)
	}
	if lang != "kuery" {
		return Query{}, fmt.Errorf("%s: query language %q: only kuery is supported", href, lang)
	}
	n, err := ParseKQL(text)
	if err != nil {
		return Query{}, fmt.Errorf("%s: %w", href, err)
	}
	return Query{Object: "search/" + d.SavedSearch, Title: text, DataView: dv, KQL: n}, nil
}
