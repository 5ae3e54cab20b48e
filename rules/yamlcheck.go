package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits on the shape of rules YAML, checked before decoding.
const (
	// MaxYAMLKeys bounds the keys of one YAML map: the YAML decoder checks keys for
	// duplicates in quadratic time.
	MaxYAMLKeys = 1000
	// MaxYAMLNesting bounds the nesting of YAML lists and maps.
	MaxYAMLNesting = 64
)

// checkYAML parses YAML text and fails on a map with more than MaxYAMLKeys keys or nesting
// deeper than MaxYAMLNesting; syntax errors are left to the decoder.
func checkYAML(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var walk func(n *yaml.Node, depth int) error
	walk = func(n *yaml.Node, depth int) error {
		if depth > MaxYAMLNesting {
			return fmt.Errorf("line %d: YAML nested deeper than %d levels", n.Line, MaxYAMLNesting)
		}
		if n.Kind == yaml.MappingNode && len(n.Content) > 2*MaxYAMLKeys {
			return fmt.Errorf("line %d: a YAML map with more than %d keys", n.Line, MaxYAMLKeys)
		}
		for _, c := range n.Content {
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return nil // the decoder reports it
		}
		if err := walk(&n, 0); err != nil {
			return err
		}
	}
}

var (
	reUnknownField = regexp.MustCompile(`(?s)field (.*?) not found in type [][\w.*]+`)
	reCannot       = regexp.MustCompile("(?s)cannot unmarshal (!\\S*)\\s+`(.*?)` into ([][\\w.*]+)")
	reCannotNode   = regexp.MustCompile(`cannot unmarshal (!\S*)\s+into ([][\w.*]+)`)
)

// yamlError rewrites a YAML decoder error without Go type names: "line 3: unknown field
// "colour"", "line 5: want a list, got text "x"".
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
	msg = reUnknownField.ReplaceAllStringFunc(msg, func(m string) string {
		return fmt.Sprintf("unknown field %q", reUnknownField.FindStringSubmatch(m)[1])
	})
	msg = reCannot.ReplaceAllStringFunc(msg, func(m string) string {
		p := reCannot.FindStringSubmatch(m)
		return fmt.Sprintf("want %s, got %s %q", goKind(p[3]), yamlKind(p[1]), p[2])
	})
	msg = reCannotNode.ReplaceAllStringFunc(msg, func(m string) string {
		p := reCannotNode.FindStringSubmatch(m)
		return fmt.Sprintf("want %s, got %s", goKind(p[2]), yamlKind(p[1]))
	})
	return errors.New(msg)
}

func yamlKind(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a map"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	case "!!str":
		return "text"
	}
	return fmt.Sprintf("a value tagged %q", tag)
}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a map"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	}
	return "text"
}
