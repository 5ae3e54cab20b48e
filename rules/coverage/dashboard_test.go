package coverage

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var dashboardFile = filepath.Join("..", "..", "dashboards", "kibana", "coverage.ndjson")

type savedObject struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Attributes map[string]any `json:"attributes"`
	References []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"references"`
}

// mappedFields returns the coverage index fields and their types from IndexMapping.
func mappedFields(t *testing.T) map[string]string {
	var mapping map[string]any
	if err := json.Unmarshal([]byte(IndexMapping), &mapping); err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	var walk func(prefix string, props map[string]any)
	walk = func(prefix string, props map[string]any) {
		for k, v := range props {
			m := v.(map[string]any)
			if p, ok := m["properties"].(map[string]any); ok {
				walk(prefix+k+".", p)
				continue
			}
			fields[prefix+k] = m["type"].(string)
		}
	}
	walk("", mapping["properties"].(map[string]any))
	return fields
}

var kqlField = regexp.MustCompile(`([A-Za-z_@][A-Za-z0-9_.@]*)\s*(?::|>=|<=|>|<)`)

// TestKibanaDashboard checks the saved objects: references resolve, and every field a panel
// aggregates or queries is in the coverage index mapping with a type that fits.
func TestKibanaDashboard(t *testing.T) {
	f, err := os.Open(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs := map[string]savedObject{}
	var order []savedObject
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var o savedObject
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("line %d: %v", len(order)+1, err)
		}
		if o.ID == "" || o.Type == "" || o.Attributes == nil {
			t.Fatalf("line %d: not a saved object", len(order)+1)
		}
		objs[o.Type+"/"+o.ID] = o
		order = append(order, o)
	}
	fields := mappedFields(t)
	types := map[string]int{}
	for _, o := range order {
		types[o.Type]++
		for _, r := range o.References {
			if _, ok := objs[r.Type+"/"+r.ID]; !ok {
				t.Errorf("%s %s: reference %s/%s not in the file", o.Type, o.ID, r.Type, r.ID)
			}
		}
		switch o.Type {
		case "index-pattern":
			if o.Attributes["title"] != DefaultIndex || o.Attributes["timeFieldName"] != "@timestamp" {
				t.Errorf("data view %v: want title %s and time field @timestamp", o.Attributes["title"], DefaultIndex)
			}
		case "lens":
			b, _ := json.Marshal(o.Attributes["state"])
			var st struct {
				Datasource struct {
					FormBased struct {
						Layers map[string]struct {
							Columns map[string]struct {
								OperationType string `json:"operationType"`
								SourceField   string `json:"sourceField"`
								Params        struct {
									SortField string `json:"sortField"`
								} `json:"params"`
							} `json:"columns"`
							ColumnOrder []string `json:"columnOrder"`
						} `json:"layers"`
					} `json:"formBased"`
				} `json:"datasourceStates"`
				Query struct {
					Query string `json:"query"`
				} `json:"query"`
			}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			for id, l := range st.Datasource.FormBased.Layers {
				if len(l.ColumnOrder) != len(l.Columns) {
					t.Errorf("%s layer %s: columnOrder %v vs %d columns", o.ID, id, l.ColumnOrder, len(l.Columns))
				}
				for name, c := range l.Columns {
					typ, ok := fields[c.SourceField]
					switch {
					case !ok:
						t.Errorf("%s column %s: field %q is not in IndexMapping", o.ID, name, c.SourceField)
					case c.OperationType == "terms" && typ != "keyword":
						t.Errorf("%s column %s: terms on %s (%s)", o.ID, name, c.SourceField, typ)
					case c.OperationType == "last_value" && (typ == "keyword" || fields[c.Params.SortField] != "date"):
						t.Errorf("%s column %s: last_value of %s sorted by %s", o.ID, name, c.SourceField, c.Params.SortField)
					}
				}
			}
			for _, m := range kqlField.FindAllStringSubmatch(st.Query.Query, -1) {
				if _, ok := fields[m[1]]; !ok {
					t.Errorf("%s query %q: field %s is not mapped", o.ID, st.Query.Query, m[1])
				}
			}
		case "dashboard":
			var panels []struct {
				PanelRefName string `json:"panelRefName"`
				PanelIndex   string `json:"panelIndex"`
			}
			if err := json.Unmarshal([]byte(o.Attributes["panelsJSON"].(string)), &panels); err != nil {
				t.Fatal(err)
			}
			for _, p := range panels {
				found := false
				for _, r := range o.References {
					if r.Name == p.PanelIndex+":"+p.PanelRefName {
						found = true
					}
				}
				if !found {
					t.Errorf("dashboard panel %s has no reference", p.PanelIndex)
				}
			}
			if len(panels) != len(o.References) {
				t.Errorf("%d panels, %d references", len(panels), len(o.References))
			}
		}
	}
	if types["index-pattern"] != 1 || types["dashboard"] != 1 || types["lens"] < 2 {
		t.Errorf("object types = %v", types)
	}
	if !strings.Contains(fmtTitles(order), "Rules per ATT&CK technique") || !strings.Contains(fmtTitles(order), "Techniques with gaps") {
		t.Errorf("want panels for rules per technique and techniques with gaps: %s", fmtTitles(order))
	}
}

func fmtTitles(objs []savedObject) string {
	var t []string
	for _, o := range objs {
		if s, ok := o.Attributes["title"].(string); ok {
			t = append(t, s)
		}
	}
	return strings.Join(t, "; ")
}
