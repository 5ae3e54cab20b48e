package rules

import (
	"bytes"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// writeHeader writes the comment lines and the source block of a rules YAML file, then the
// "mappings:" key (an empty list when n is 0).
func writeHeader(w io.Writer, s *Source, n int) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s %s mappings to ATT&CK %s (%s), imported by `enricher rules import`.\n",
		s.Framework, s.FrameworkVersion, s.AttackVersion, s.Domain)
	fmt.Fprintf(&b, "# Values are as published; enricher normalizes them when it loads this file.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(struct {
		Source *Source `yaml:"source"`
	}{s}); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if n == 0 {
		b.WriteString("mappings: []\n")
	} else {
		b.WriteString("mappings:\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// mappingEncoder writes mappings one at a time as items of the "mappings" list, so that a
// release of any size is written without holding it: the same bytes yaml.v3 writes for the
// whole File with an indent of 2.
type mappingEncoder struct {
	w       io.Writer
	limit   int64 // bytes; < 0 for none
	written int64
	buf     bytes.Buffer
	line    bytes.Buffer
}

// errYAMLTooLarge is returned by mappingEncoder.encode past its limit.
var errYAMLTooLarge = fmt.Errorf("more than the limit")

func newMappingEncoder(w io.Writer, limit int64) *mappingEncoder {
	return &mappingEncoder{w: w, limit: limit}
}

func (e *mappingEncoder) encode(m *FileMapping) error {
	e.buf.Reset()
	enc := yaml.NewEncoder(&e.buf)
	enc.SetIndent(2)
	if err := enc.Encode([]*FileMapping{m}); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	// Indent the one-item list by two spaces to put it under "mappings:".
	e.line.Reset()
	for _, l := range bytes.SplitAfter(e.buf.Bytes(), []byte("\n")) {
		if len(l) > 1 {
			e.line.WriteString("  ")
		}
		e.line.Write(l)
	}
	if e.limit >= 0 && e.written+int64(e.line.Len()) > e.limit {
		return errYAMLTooLarge
	}
	n, err := e.w.Write(e.line.Bytes())
	e.written += int64(n)
	return err
}
