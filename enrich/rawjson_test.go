package enrich

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	root := []byte(`{"status":"enriched"}`)
	tests := []struct {
		name string
		in   string
		set  map[string][]byte
		want string
	}{
		{"append", `{"a":1}`, map[string][]byte{"r": root}, `{"a":1,"r":{"status":"enriched"}}`},
		{"empty object", `{}`, map[string][]byte{"r": root}, `{"r":{"status":"enriched"}}`},
		{"empty object with space", "{ \n}", map[string][]byte{"r": root}, "{ \n\"r\":{\"status\":\"enriched\"}}"},
		{"replace in place", `{"a":1, "r" : {"old":true}, "b":2}`, map[string][]byte{"r": root},
			`{"a":1, "r" : {"status":"enriched"}, "b":2}`},
		{"whitespace kept", "{\n  \"a\": 1.10,\n  \"b\": \"\\u00e9\"\n}\n", map[string][]byte{"r": root},
			"{\n  \"a\": 1.10,\n  \"b\": \"\\u00e9\",\"r\":{\"status\":\"enriched\"}\n}\n"},
		{"dotted keys under root removed", `{"r.controls":[1],"a":1,"r":{},"r.x":2}`, map[string][]byte{"r": root},
			`{"a":1,"r":{"status":"enriched"}}`},
		{"dotted only", `{"a":1,"r.controls":[1]}`, map[string][]byte{"r": root}, `{"a":1,"r":{"status":"enriched"}}`},
		{"first two removed", `{"r.a":1, "r.b":2, "c":3}`, map[string][]byte{"r": root}, `{"c":3,"r":{"status":"enriched"}}`},
		{"all removed", `{"r.a":1,"r.b":2}`, map[string][]byte{"r": nil}, `{}`},
		{"duplicates of root", `{"r":1,"a":2,"r":3}`, map[string][]byte{"r": root}, `{"r":{"status":"enriched"},"a":2}`},
		{"prefix is not under", `{"rx":1}`, map[string][]byte{"r": root}, `{"rx":1,"r":{"status":"enriched"}}`},
		{"two namespaces sorted", `{"a":1}`, map[string][]byte{"z": []byte(`1`), "r": []byte(`2`)}, `{"a":1,"r":2,"z":1}`},
		{"remove with nil", `{"a":1,"r":{"x":1},"b":2}`, map[string][]byte{"r": nil}, `{"a":1,"b":2}`},
		{"big integers and bad utf8 kept", "{\"n\":12345678901234567890123,\"s\":\"\xff\xfe\"}", map[string][]byte{"r": root},
			"{\"n\":12345678901234567890123,\"s\":\"\xff\xfe\",\"r\":{\"status\":\"enriched\"}}"},
		{"escaped key", `{"\u0072":1}`, map[string][]byte{"r": root}, `{"\u0072":{"status":"enriched"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Splice([]byte(tt.in), tt.set)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestSpliceRejects(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{"a":1`, `{"a" 1}`, `{"a":1}x`, `{"a":"x}`, `{a:1}`,
		`{"a":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`} {
		if _, err := Splice([]byte(in), map[string][]byte{"r": []byte(`1`)}); !errors.Is(err, ErrNotObject) {
			t.Errorf("%.40q: err = %v, want ErrNotObject", in, err)
		}
	}
}

func TestDecodeMembers(t *testing.T) {
	raw := []byte(`{"kibana.alert.rule.threat":[{"technique":[{"id":"T1021"}]}],"host":{"name":"h"},` +
		`"threat":{"technique":{"id":"T1"}},"threat":{"technique":{"id":"T2"}},"n":12345678901234567890,` +
		`"attack_mappings":{"status":"enriched"}}`)
	got, err := DecodeMembers(raw, []string{"kibana.alert.rule.threat.technique.id", "threat.technique.id", "attack_mappings"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	if len(got) != 3 || got["host"] != nil || got["n"] != nil {
		t.Fatalf("decoded %v, want the three wanted members only", keys)
	}
	if ids := Values(got, "threat.technique.id"); !reflect.DeepEqual(ids, []any{"T1", "T2"}) {
		t.Fatalf("duplicate key lost a value: %v", ids)
	}
	n, err := DecodeMembers(raw, []string{"n"})
	if err != nil || n["n"] != json.Number("12345678901234567890") {
		t.Fatalf("number = %#v, %v", n["n"], err)
	}
}

// FuzzSplice checks that splicing a valid object gives a valid object in which every
// member outside the spliced names is byte for byte what it was.
func FuzzSplice(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"r":1,"r.x":2,"a":[1,{"b":"c"}]}`, "{ \"a\" : \"\\\"}\" , \"r\":{}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return
		}
		before, _, err := scanObject(in)
		if err != nil {
			return
		}
		out, err := Splice(in, map[string][]byte{"r": []byte(`{"k":1}`)})
		if err != nil {
			t.Fatalf("Splice(%q): %v", in, err)
		}
		if !json.Valid(out) {
			t.Fatalf("Splice(%q) = %q: not valid JSON", in, out)
		}
		after, _, err := scanObject(out)
		if err != nil {
			t.Fatal(err)
		}
		var keep, got []string
		for _, m := range before {
			if !CouldHold(m.key, "r") {
				keep = append(keep, string(in[m.keyStart:m.valEnd]))
			}
		}
		nr := 0
		for _, m := range after {
			if m.key == "r" {
				nr++
				continue
			}
			got = append(got, string(out[m.keyStart:m.valEnd]))
		}
		if nr != 1 || !reflect.DeepEqual(keep, got) {
			t.Fatalf("Splice(%q) = %q: members outside r changed or r not once", in, out)
		}
	})
}
