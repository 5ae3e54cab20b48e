package ctid

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// scanner is a small validating JSON reader over a byte slice. It returns raw values
// (json.RawMessage slices of the input) so that the decoder can check types field by field
// without building generic trees. Syntax follows RFC 8259.
type scanner struct {
	data  []byte
	pos   int
	depth int
}

type syntaxError struct {
	msg   string
	off   int
	depth bool // nesting deeper than MaxDepth: valid JSON, but over our limit
}

func (e *syntaxError) Error() string { return e.msg }

func (s *scanner) tooDeep() error {
	return &syntaxError{msg: fmt.Sprintf("JSON nested deeper than %d levels", MaxDepth), off: s.pos, depth: true}
}

func (s *scanner) fail(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...), off: s.pos}
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) eof() bool { s.ws(); return s.pos >= len(s.data) }

// value skips one JSON value and returns its bytes.
func (s *scanner) value() (json.RawMessage, error) {
	s.ws()
	start := s.pos
	if s.pos >= len(s.data) {
		return nil, s.fail("unexpected end of JSON input")
	}
	var err error
	switch c := s.data[s.pos]; {
	case c == '{':
		err = s.skipObject()
	case c == '[':
		err = s.skipArray()
	case c == '"':
		_, err = s.stringEnd()
	case c == 't':
		err = s.literal("true")
	case c == 'f':
		err = s.literal("false")
	case c == 'n':
		err = s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		err = s.number()
	default:
		err = s.fail("invalid character %q looking for beginning of value", c)
	}
	if err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.fail("invalid literal, want %s", lit)
	}
	s.pos += len(lit)
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos < len(s.data) && s.data[s.pos] == '0' {
		s.pos++
	} else if s.digits() == 0 {
		return s.fail("invalid number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.fail("invalid number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.fail("invalid number")
		}
	}
	return nil
}

// stringEnd skips a string starting at s.pos ('"') and reports whether it had escapes.
func (s *scanner) stringEnd() (escaped bool, err error) {
	s.pos++
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return false, s.fail("unexpected end of JSON input")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return false, s.fail("unexpected end of JSON input")
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false, s.fail("invalid \\u escape in string")
					}
				}
				s.pos += 6
			default:
				return false, s.fail("invalid escape in string")
			}
		case c < 0x20:
			return false, s.fail("invalid control character in string")
		case c >= 0x80:
			escaped = true // may need UTF-8 repair; decode the slow way
			s.pos++
		default:
			s.pos++
		}
	}
	return false, s.fail("unexpected end of JSON input")
}

// str reads a string value and decodes it.
func (s *scanner) str() (string, error) {
	start := s.pos
	escaped, err := s.stringEnd()
	if err != nil {
		return "", err
	}
	raw := s.data[start:s.pos]
	if !escaped {
		return string(raw[1 : len(raw)-1]), nil
	}
	if inner := raw[1 : len(raw)-1]; utf8.Valid(inner) && !hasBackslash(inner) {
		return string(inner), nil
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", err
	}
	return out, nil
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// members calls fn for each member of the object starting at s.pos; fn must consume the value.
func (s *scanner) members(fn func(key string) error) error {
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return s.fail("want object")
	}
	s.pos++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.fail("invalid character looking for beginning of object key string")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.fail("invalid character after object key")
		}
		s.pos++
		if err := fn(key); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of JSON input")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("invalid character %q after object key:value pair", s.data[s.pos])
		}
	}
}

// elements calls fn for each element of the array starting at s.pos; fn must consume it.
func (s *scanner) elements(fn func(i int) error) error {
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != '[' {
		return s.fail("want array")
	}
	s.pos++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := fn(i); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of JSON input")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("invalid character %q after array element", s.data[s.pos])
		}
	}
}

func (s *scanner) skipObject() error {
	if s.depth++; s.depth > MaxDepth {
		return s.tooDeep()
	}
	defer func() { s.depth-- }()
	return s.members(func(string) error { _, err := s.value(); return err })
}

func (s *scanner) skipArray() error {
	if s.depth++; s.depth > MaxDepth {
		return s.tooDeep()
	}
	defer func() { s.depth-- }()
	return s.elements(func(int) error { _, err := s.value(); return err })
}
