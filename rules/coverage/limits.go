package coverage

import (
	"bytes"
	"fmt"
	"sync"

	"gopkg.in/yaml.v3"
)

// Limits on rule files. Each keeps a hostile or broken file from costing more than a few
// tens of MB or a second; a file over one is reported with its path, line and the limit.
const (
	// MaxRuleFileBytes bounds one TOML or YAML rule file, and a JSON file that is not one
	// object a line (the largest shared Elastic rule is 24 KB, Sigma rule 2 KB).
	MaxRuleFileBytes = 256 << 10
	// MaxExportBytes bounds one Kibana rule export (NDJSON), read a line at a time.
	MaxExportBytes = 256 << 20
	// MaxExportLineBytes bounds one line (one rule) of an export; a longer line is skipped
	// with a warning.
	MaxExportLineBytes = 1 << 20
	// MaxNesting bounds the nesting of JSON and YAML objects and arrays.
	MaxNesting = 64
	// MaxTOMLDepth bounds the depth of a TOML key path: table header parts, dotted key
	// parts, inline tables and arrays together (Elastic rules need about 6). The TOML
	// decoder copies a key's whole path for every key, so deep paths cost memory
	// quadratically.
	MaxTOMLDepth = 10
	// MaxTOMLValues bounds the keys and array elements of one TOML file (an Elastic rule
	// has a few hundred).
	MaxTOMLValues = 10000
	// MaxYAMLNodes bounds the nodes (scalars, lists, maps) of one YAML document.
	MaxYAMLNodes = 20000
	// MaxYAMLKeys bounds the keys of one YAML map: the YAML decoder checks keys for
	// duplicates in quadratic time.
	MaxYAMLKeys = 1000
	// decodeBudget bounds the bytes of rule content being decoded at once by all workers,
	// so that memory does not grow with the number of CPUs.
	decodeBudget = 2 * MaxRuleFileBytes
)

// budget is a weighted semaphore over bytes being decoded.
var budget = newWeighted(decodeBudget)

type weighted struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int64
	size int64
}

func newWeighted(n int64) *weighted {
	w := &weighted{free: n, size: n}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// acquire waits until n bytes (at most the whole budget) are free and takes them; the
// returned func gives them back.
func (w *weighted) acquire(n int64) func() {
	n = min(max(n, 1), w.size)
	w.mu.Lock()
	for w.free < n {
		w.cond.Wait()
	}
	w.free -= n
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.free += n
		w.mu.Unlock()
		w.cond.Broadcast()
	}
}

// limitError is a rule file over one of the limits above.
type limitError struct {
	line int
	msg  string
}

func (e *limitError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("line %d: %s", e.line, e.msg)
	}
	return e.msg
}

// checkTOML scans TOML text, without decoding it, for key paths deeper than MaxTOMLDepth
// and more than MaxTOMLValues keys and array elements. It only follows the structure
// (tables, keys, strings, comments, brackets); syntax errors are left to the decoder.
func checkTOML(data []byte) error {
	type frame struct {
		table bool // an inline table: a key comes after '{' and ','
		depth int  // depth of the keys (inline table) or elements (array) inside
	}
	var stack []frame
	line, i := 1, 0
	tableDepth := 0   // parts of the current [table] or [[array]] header
	valueDepth := 0   // depth of the value being read
	values := 0       // keys and array elements so far
	expectKey := true // at the start of a top-level line, or after '{' or ',' in an inline table
	lineStart := true // nothing but white space since the last newline
	deep := func(d int) error {
		if d > MaxTOMLDepth {
			return &limitError{line, fmt.Sprintf("TOML key path deeper than %d levels (tables, dotted keys, inline tables and arrays together)", MaxTOMLDepth)}
		}
		return nil
	}
	count := func() error {
		if values++; values > MaxTOMLValues {
			return &limitError{line, fmt.Sprintf("more than %d TOML keys and array elements", MaxTOMLValues)}
		}
		return nil
	}
	// skipString skips a string starting at i (a quote) and returns the index after it.
	skipString := func(i int) int {
		q := data[i]
		if i+2 < len(data) && data[i+1] == q && data[i+2] == q { // multi-line
			i += 3
			for i < len(data) {
				switch {
				case data[i] == '\\' && q == '"':
					i++
				case data[i] == '\n':
					line++
				case data[i] == q && i+2 < len(data) && data[i+1] == q && data[i+2] == q:
					i += 3
					for i < len(data) && data[i] == q { // up to two more quotes belong to the string
						i++
					}
					return i
				}
				i++
			}
			return i
		}
		for i++; i < len(data) && data[i] != '\n'; i++ {
			if data[i] == '\\' && q == '"' {
				i++
			} else if data[i] == q {
				return i + 1
			}
		}
		return i
	}
	// keyParts reads a dotted key starting at i and returns its number of parts and the
	// index after it (at '=', ']' or whatever ends it).
	keyParts := func(i int) (int, int) {
		parts := 1
		for i < len(data) {
			switch c := data[i]; {
			case c == '"' || c == '\'':
				i = skipString(i)
				continue
			case c == '.':
				parts++
			case c == '=' || c == ']' || c == '\n' || c == '#' || c == '}' || c == ',' || c == '[' || c == '{':
				return parts, i
			}
			i++
		}
		return parts, i
	}
	for i < len(data) {
		c := data[i]
		switch {
		case c == '\n':
			line++
			i++
			lineStart = true
			if len(stack) == 0 {
				expectKey = true
			}
			continue
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			continue
		case expectKey && len(stack) == 0 && lineStart && c == '[': // [table] or [[array of tables]]
			i++
			if i < len(data) && data[i] == '[' {
				i++
			}
			parts, j := keyParts(i)
			tableDepth = parts
			if err := deep(tableDepth); err != nil {
				return err
			}
			if err := count(); err != nil {
				return err
			}
			i = j
			for i < len(data) && data[i] == ']' {
				i++
			}
		case expectKey && c != '}' && c != ']':
			parts, j := keyParts(i)
			base := tableDepth
			if len(stack) > 0 {
				base = stack[len(stack)-1].depth
			}
			valueDepth = base + parts
			if err := deep(valueDepth); err != nil {
				return err
			}
			if err := count(); err != nil {
				return err
			}
			expectKey = false
			i = max(j, i+1)
			if j < len(data) && data[j] == '=' {
				i = j + 1
			}
		case c == '"' || c == '\'':
			i = skipString(i)
		case c == '[':
			valueDepth++
			if err := deep(valueDepth); err != nil {
				return err
			}
			if err := count(); err != nil {
				return err
			}
			stack = append(stack, frame{table: false, depth: valueDepth})
			i++
		case c == '{':
			stack = append(stack, frame{table: true, depth: valueDepth})
			expectKey = true
			i++
		case c == ']' || c == '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			if len(stack) > 0 {
				valueDepth = stack[len(stack)-1].depth
			}
			expectKey = false
			i++
		case c == ',':
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				valueDepth = top.depth
				if top.table {
					expectKey = true
				} else if err := count(); err != nil {
					return err
				}
			}
			i++
		default:
			i++
		}
		lineStart = false
	}
	return nil
}

// checkJSONNesting fails when JSON text nests arrays and objects deeper than MaxNesting.
func checkJSONNesting(data []byte) error {
	depth, inStr, esc := 0, false, false
	line := 1
	for _, c := range data {
		switch {
		case c == '\n':
			line++
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			if depth++; depth > MaxNesting {
				return &limitError{line, fmt.Sprintf("JSON nested deeper than %d levels", MaxNesting)}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// checkYAML fails when a parsed YAML document has more than MaxYAMLNodes nodes, a map with
// more than MaxYAMLKeys keys, or nesting deeper than MaxNesting. Aliases are not followed
// (the decoder bounds their expansion itself).
func checkYAML(n *yaml.Node) error {
	nodes := 0
	var walk func(n *yaml.Node, depth int) error
	walk = func(n *yaml.Node, depth int) error {
		if nodes++; nodes > MaxYAMLNodes {
			return &limitError{n.Line, fmt.Sprintf("more than %d YAML values in one document", MaxYAMLNodes)}
		}
		if depth > MaxNesting {
			return &limitError{n.Line, fmt.Sprintf("YAML nested deeper than %d levels", MaxNesting)}
		}
		if n.Kind == yaml.MappingNode && len(n.Content) > 2*MaxYAMLKeys {
			return &limitError{n.Line, fmt.Sprintf("a YAML map with more than %d keys", MaxYAMLKeys)}
		}
		for _, c := range n.Content {
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(n, 0)
}

// bomless drops a UTF-8 byte order mark.
func bomless(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) }
