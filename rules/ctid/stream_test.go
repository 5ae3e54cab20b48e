package ctid

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// TestDecodeHostile covers input that is valid JSON but over a limit, or JSON a strict
// reader might refuse (a byte order mark, huge numbers), with exact messages.
func TestDecodeHostile(t *testing.T) {
	row := `{"mapping_type":null,"capability_group":null}`
	for _, tc := range []struct{ name, in, want string }{
		{"bom", "\xef\xbb\xbf{\"mapping_objects\": [" + row + "]}", ""},
		{"partial bom", "\xef\xbb{}", `f.json: invalid JSON at line 1, column 1: invalid character 'ï' looking for beginning of value`},
		{"huge number in a string field", `{"mapping_objects": [{"mapping_type":1e400,"capability_group":null}]}`,
			`f.json: row 1: mapping_type: got number, want string or null`},
		{"huge number at top", `1e400`, `f.json: got number, want object`},
		{"nesting 10001", `{"metadata":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
			`f.json: line 1, column 76: JSON nested deeper than 64 levels`},
		{"nesting in a row", `{"mapping_objects": [` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `]}`,
			`f.json: line 1, column 84: JSON nested deeper than 64 levels`},
		{"row too large", `{"mapping_objects": [{"comments": "` + strings.Repeat("x", MaxRowBytes) + `"}]}`,
			`f.json: row 1: larger than the 1048576-byte limit of one row`},
		{"metadata too large", `{"metadata": {"author": "` + strings.Repeat("x", MaxMetadataBytes) + `"}}`,
			`f.json: metadata: larger than the 1048576-byte limit`},
		{"duplicate top-level key", `{"mapping_objects": [], "mapping_objects": [` + row + `]}`, `f.json: mapping_objects: duplicate field`},
		{"trailing comma", `{"mapping_objects": [` + row + `,]}`, `f.json: invalid JSON at line 1, column 68: invalid character ']' looking for beginning of value`},
		{"trailing data", `{} x`, `f.json: invalid JSON at line 1, column 4: invalid character 'x' after top-level value`},
		{"empty", ``, `f.json: invalid JSON at line 1, column 1: unexpected end of JSON input`},
		{"cut short", "{\"mapping_objects\": [\n" + row, `f.json: invalid JSON at line 2, column 46: unexpected end of JSON input`},
		{"syntax error in row 2", "{\"mapping_objects\": [\n" + row + ",\n{\"mapping_type\": nul}]}",
			`f.json: invalid JSON at line 3, column 18: invalid literal, want null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("f.json", []byte(tc.in), Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestDecodeReaderSameAsDecode reads every test and shared file one byte per Read call
// and checks that it gives the same document, or the same error, as Decode.
func TestDecodeReaderSameAsDecode(t *testing.T) {
	var files []string
	for _, sub := range []string{"valid", "invalid", "content"} {
		m, _ := filepath.Glob(filepath.Join(testdata(t, sub), "*.json"))
		files = append(files, m...)
	}
	files = append(files, filepath.Join(sharedMappings(t), "aws-12.12.2024_attack-16.1-enterprise.json"))
	for _, f := range files {
		data := read(t, f)
		want, werr := Decode("f", data, Options{Lenient: true})
		var rows []Row
		got, gerr := DecodeReader(context.Background(), "f", iotest.OneByteReader(bytes.NewReader(data)), Options{Lenient: true},
			func(i int, r *Row) error {
				if i != len(rows)+1 {
					t.Fatalf("%s: row %d after %d rows", f, i, len(rows))
				}
				rows = append(rows, *r)
				return nil
			})
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Errorf("%s: Decode: %v; DecodeReader: %v", f, werr, gerr)
			continue
		}
		if werr != nil {
			continue
		}
		got.Rows = rows
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: documents differ", f)
		}
	}
}

// TestDecodeReaderBoundedMemory streams a 40 MB file of rows and checks that the heap does
// not grow with it, and that a cancelled context stops the decoding.
func TestDecodeReaderBoundedMemory(t *testing.T) {
	row := []byte(`{"attack_object_id":"T1021.002","capability_id":"AC-2","mapping_type":"mitigates","capability_group":"AC","comments":"` +
		strings.Repeat("c", 300) + `"},`)
	const rows = 100_000 // ~42 MB
	src := &repeatReader{head: []byte(`{"mapping_objects":[`), body: row, n: rows, tail: []byte(`{"mapping_type":null,"capability_group":null}]}`)}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	_, err := DecodeReader(context.Background(), "big.json", src, Options{}, func(int, *Row) error { n++; return nil })
	runtime.ReadMemStats(&after)
	if err != nil || n != rows+1 {
		t.Fatalf("%d rows, %v", n, err)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Errorf("live heap grew by %d MB decoding ~42 MB", grew>>20)
	}

	ctx, cancel := context.WithCancel(context.Background())
	src = &repeatReader{head: []byte(`{"mapping_objects":[`), body: row, n: rows, tail: []byte(`]}`)}
	n = 0
	_, err = DecodeReader(ctx, "big.json", src, Options{}, func(int, *Row) error {
		if n++; n == 1000 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n > 1256 {
		t.Fatalf("after cancel: %d rows, %v", n, err)
	}
}

// repeatReader yields head, n copies of body, then tail, without holding them all.
type repeatReader struct {
	head, body, tail []byte
	n                int
	cur              []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		switch {
		case r.head != nil:
			r.cur, r.head = r.head, nil
		case r.n > 0:
			r.cur, r.n = r.body, r.n-1
		case r.tail != nil:
			r.cur, r.tail = r.tail, nil
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
