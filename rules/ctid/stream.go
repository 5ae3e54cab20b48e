package ctid

import (
	"errors"
	"fmt"
	"io"
)

// Limits on a CTID file. Each is checked while the file is read, so DecodeReader's memory
// is bounded by them whatever the file's size.
const (
	// MaxDepth bounds the nesting of arrays and objects; the schema needs 4 levels.
	MaxDepth = 64
	// MaxRowBytes bounds one entry of mapping_objects (the largest published row is ~3 KB).
	MaxRowBytes = 1 << 20
	// MaxMetadataBytes bounds the metadata object (the largest published one is ~5 KB) and
	// any other top-level value.
	MaxMetadataBytes = 1 << 20
)

// errTooLong is returned by reader.value when a value is longer than its limit.
var errTooLong = errors.New("value too long")

// reader reads JSON from an io.Reader through a fixed buffer and cuts it into values
// without keeping more than one value in memory. It only finds where each value ends
// (brackets, strings, escapes, nesting depth); the scanner then validates the value's bytes.
type reader struct {
	r         io.Reader
	buf       []byte
	i, n      int
	line, col int // position of buf[i], 1-based; columns count bytes
	eof       bool
	err       error // a read error other than io.EOF
}

func newReader(r io.Reader) *reader {
	return &reader{r: r, buf: make([]byte, 64<<10), line: 1, col: 1}
}

// fill makes sure a byte is buffered; false at the end of input or on a read error.
func (r *reader) fill() bool {
	for r.i >= r.n {
		if r.eof || r.err != nil {
			return false
		}
		n, err := r.r.Read(r.buf)
		r.i, r.n = 0, n
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			r.err = err
		}
	}
	return true
}

func (r *reader) peek() (byte, bool) {
	if !r.fill() {
		return 0, false
	}
	return r.buf[r.i], true
}

func (r *reader) advance() {
	if r.buf[r.i] == '\n' {
		r.line, r.col = r.line+1, 1
	} else {
		r.col++
	}
	r.i++
}

func (r *reader) ws() {
	for r.fill() {
		switch r.buf[r.i] {
		case ' ', '\t', '\n', '\r':
			r.advance()
		default:
			return
		}
	}
}

// skipBOM skips a UTF-8 byte order mark at the start of input (RFC 8259 section 8.1 lets a
// parser ignore one; Windows tools write it).
func (r *reader) skipBOM() {
	const bom = "\xef\xbb\xbf"
	for r.n < len(bom) && !r.eof && r.err == nil { // only ever called at the start
		n, err := r.r.Read(r.buf[r.n:])
		r.n += n
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			r.err = err
		}
	}
	if string(r.buf[:min(r.n, len(bom))]) == bom {
		r.i = len(bom)
	}
}

// fail returns a syntax error at the current position.
func (r *reader) fail(format string, args ...any) *posError {
	return &posError{line: r.line, col: r.col, err: &syntaxError{msg: fmt.Sprintf(format, args...)}}
}

// posError is a syntaxError at an absolute line and column.
type posError struct {
	line, col int
	err       *syntaxError
}

func (e *posError) Error() string { return e.err.msg }

// readErr is the error for input that ended early: the read error, or a syntax error.
func (r *reader) readErr() error {
	if r.err != nil {
		return r.err
	}
	return r.fail("unexpected end of JSON input")
}

// value appends the next JSON value (after white space) to dst and returns it with the
// line and column where it starts. depth is the nesting of the value's container. A value
// longer than limit fails with errTooLong; nesting deeper than MaxDepth fails.
func (r *reader) value(dst []byte, limit, depth int) (raw []byte, line, col int, err error) {
	r.ws()
	if !r.fill() {
		return nil, 0, 0, r.readErr()
	}
	line, col = r.line, r.col
	switch c := r.buf[r.i]; c {
	case ',', ':', ']', '}':
		return nil, 0, 0, r.fail("invalid character %q looking for beginning of value", c)
	}
	nest := 0
	inStr, esc := false, false
	for {
		if !r.fill() {
			if r.err != nil || inStr || nest > 0 || len(dst) == 0 {
				return nil, 0, 0, r.readErr()
			}
			return dst, line, col, nil // a number or literal at the end of input
		}
		c := r.buf[r.i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
				if nest == 0 {
					r.advance()
					return append(dst, c), line, col, nil
				}
			}
		} else {
			switch c {
			case '"':
				inStr = true
			case '{', '[':
				if nest++; depth+nest > MaxDepth {
					e := r.fail("JSON nested deeper than %d levels", MaxDepth)
					e.err.depth = true
					return nil, 0, 0, e
				}
			case '}', ']':
				if nest == 0 {
					return dst, line, col, nil // ends a number or literal
				}
				if nest--; nest == 0 {
					r.advance()
					return append(dst, c), line, col, nil
				}
			case ',', ' ', '\t', '\n', '\r':
				if nest == 0 {
					return dst, line, col, nil
				}
			}
		}
		if len(dst) >= limit {
			return nil, line, col, errTooLong
		}
		dst = append(dst, c)
		r.advance()
	}
}

// expect consumes byte c (after white space) or fails with msg.
func (r *reader) expect(c byte, msg string) error {
	r.ws()
	b, ok := r.peek()
	if !ok {
		return r.readErr()
	}
	if b != c {
		return r.fail("invalid character %q %s", b, msg)
	}
	r.advance()
	return nil
}

// validate checks that raw is exactly one JSON value; depth is the nesting of its container.
// Errors carry the absolute position, given where raw starts.
func validate(raw []byte, depth, line, col int) error {
	sc := &scanner{data: raw, depth: depth}
	_, err := sc.value()
	if err == nil && !sc.eof() {
		err = sc.fail("invalid character %q after value", raw[sc.pos])
	}
	if err == nil {
		return nil
	}
	se, ok := err.(*syntaxError)
	if !ok {
		return err
	}
	l, c := position(raw, int64(se.off))
	if l == 1 {
		c += col - 1
	}
	return &posError{line: line + l - 1, col: c, err: se}
}
