package ctid

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
)

// sharedSchema compiles CTID's published schema from ../shared, or returns nil without it.
func sharedSchema(t testing.TB) *jsonschema.Schema {
	schemaOnce.Do(func() {
		p := filepath.Join(moduleRoot(t), "..", "shared", "data", "mappings", "mapex-unified-data-schema.json")
		if _, err := os.Stat(p); err != nil {
			return
		}
		s, err := jsonschema.NewCompiler().Compile(p)
		if err == nil {
			schema = s
		}
	})
	return schema
}

var goTypeNames = regexp.MustCompile(`interface \{\}|map\[|\[\]string|json\.|reflect|Go value`)

// FuzzDecode checks, on any input: Decode does not panic; DecodeReader reading one byte at a
// time gives the same result; errors do not name Go types; and, where the input is within
// our documented limits and deviations (no byte order mark, no duplicate top-level key,
// nesting within MaxDepth), Decode accepts exactly what the published JSON Schema accepts.
func FuzzDecode(f *testing.F) {
	root := moduleRoot(f)
	for _, sub := range []string{"valid", "invalid", "content"} {
		files, _ := filepath.Glob(filepath.Join(root, "rules", "testdata", "ctid", sub, "*.json"))
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("\xef\xbb\xbf{}"))
	f.Add([]byte(`{"mapping_objects": [{"mapping_type": 1e400, "capability_group": null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v for %d bytes", d, len(data))
			}
		}()
		doc, err := Decode("f.json", data, Options{})
		var rows []Row
		doc2, err2 := DecodeReader(context.Background(), "f.json", iotest.OneByteReader(bytes.NewReader(data)), Options{},
			func(_ int, r *Row) error { rows = append(rows, *r); return nil })
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Decode: %v\nDecodeReader one byte at a time: %v", err, err2)
		}
		if err == nil {
			doc2.Rows = rows
			if !reflect.DeepEqual(doc, doc2) {
				t.Fatalf("documents differ")
			}
		} else if e, ok := err.(*Error); ok && goTypeNames.MatchString(e.Msg) {
			t.Fatalf("Go type names in %q", err)
		}
		s := sharedSchema(t)
		if s == nil || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) || err != nil && (e(err).Msg == "duplicate field" ||
			bytes.Contains([]byte(e(err).Msg), []byte("nested deeper")) || bytes.Contains([]byte(e(err).Msg), []byte("-byte limit"))) {
			return
		}
		inst, jerr := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if jerr == nil && !json.Valid(data) {
			jerr = errInvalidJSON
		}
		theirs := jerr
		if jerr == nil {
			theirs = s.Validate(inst)
		}
		if (err == nil) != (theirs == nil) {
			t.Fatalf("ours: %v\nschema: %v", err, theirs)
		}
	})
}

type constError string

func (e constError) Error() string { return string(e) }

const errInvalidJSON = constError("invalid JSON")

func e(err error) *Error {
	if ce, ok := err.(*Error); ok {
		return ce
	}
	return &Error{}
}
