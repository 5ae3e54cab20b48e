package enrich

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The README's field table ("What is written on alerts") and Schema stay one definition:
// every top-level field of Schema has a row, every row is a top-level field of Schema, and
// the row's type is the field's.
func TestREADMEFieldTableMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "## What is written on alerts")
	end := strings.Index(text, "### Field mappings and rollover")
	if start < 0 || end < start {
		t.Fatal("README: no section \"What is written on alerts\"")
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([a-z]+)(\\[\\])? \\|")
	inREADME := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(text[start:end], -1) {
		inREADME[m[1]] = m[2] + m[3]
	}
	want := map[string]string{}
	for _, f := range Schema {
		if strings.Contains(f.Path, ".") {
			continue
		}
		typ := f.Type
		switch f.Type {
		case TypeObjectArr:
			typ = "object[]"
		case TypeKeyword:
			typ = "keyword"
			if !scalarKeyword[f.Path] {
				typ = "keyword[]"
			}
		}
		want[f.Path] = typ
	}
	var problems []string
	for p, typ := range want {
		got, ok := inREADME[p]
		switch {
		case !ok:
			problems = append(problems, "no README row for "+p)
		case got != typ:
			problems = append(problems, p+": README says "+got+", Schema "+typ)
		}
	}
	for p := range inREADME {
		if _, ok := want[p]; !ok {
			problems = append(problems, "README row "+p+" is not in Schema")
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
}

// scalarKeyword are the keyword fields that hold one value (the others are arrays).
var scalarKeyword = map[string]bool{FieldStatus: true}
