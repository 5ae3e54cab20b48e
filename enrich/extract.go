package enrich

import (
	"sort"
	"strconv"
	"strings"
)

// Extractor finds technique IDs at a fixed set of field paths. It compiles the paths into a
// trie once, so fields that share a prefix (kibana.alert.rule.threat.technique.id and
// ...subtechnique.id) are walked together, and every spelling of a path (dotted keys,
// nested objects, any mix) costs one map lookup per candidate key. Safe for concurrent use.
type Extractor struct {
	root *trieNode
}

type trieNode struct {
	// candidates are the keys to look up in an object at this node: every dotted join of
	// segments below it, each with the node it leads to.
	candidates []candidate
	children   map[string]*trieNode
	fields     []Field // fields that end at this node
}

type candidate struct {
	key  string
	node *trieNode
}

// NewExtractor compiles fields into an Extractor.
func NewExtractor(fields []Field) *Extractor {
	root := &trieNode{children: map[string]*trieNode{}}
	for _, f := range fields {
		n := root
		for _, seg := range strings.Split(f.Path, ".") {
			c, ok := n.children[seg]
			if !ok {
				c = &trieNode{children: map[string]*trieNode{}}
				n.children[seg] = c
			}
			n = c
		}
		n.fields = append(n.fields, f)
	}
	var compile func(n *trieNode)
	compile = func(n *trieNode) {
		var walk func(prefix string, m *trieNode)
		walk = func(prefix string, m *trieNode) {
			segs := make([]string, 0, len(m.children))
			for seg := range m.children {
				segs = append(segs, seg)
			}
			sort.Strings(segs)
			for _, seg := range segs {
				c := m.children[seg]
				key := seg
				if prefix != "" {
					key = prefix + "." + seg
				}
				n.candidates = append(n.candidates, candidate{key: key, node: c})
				walk(key, c)
			}
		}
		walk("", n)
		for _, c := range n.children {
			compile(c)
		}
	}
	compile(root)
	return &Extractor{root: root}
}

// Bounds on what one alert can make enricher do and write. Real alerts carry a handful of
// technique IDs; these stop a crafted one from costing time with the square of its IDs or
// from growing ten times on write-back.
const (
	// MaxTechniqueIDs is the number of distinct technique IDs looked up per alert; more
	// are reported once (ReasonTooMany) and ignored.
	MaxTechniqueIDs = 256
	// MaxProblems is the number of skipped values reported per alert; the rest are
	// counted in one last problem (ReasonTruncated).
	MaxProblems = 32
)

// Extract returns the distinct, normalized technique IDs found in src, sorted (at most
// MaxTechniqueIDs), and the values that were skipped (at most MaxProblems+2 entries: the truncation and the too-many counts come last).
func (x *Extractor) Extract(src map[string]any) (ids []string, problems []Problem) {
	var st extractState
	st.walkMap(src, x.root)
	if len(st.ids) > 1 {
		sort.Strings(st.ids)
	}
	if st.tooMany > 0 {
		st.problems = append(st.problems, Problem{Field: st.tooManyField, Value: strconv.Itoa(st.tooMany) + " more distinct IDs", Reason: ReasonTooMany})
	}
	if st.dropped > 0 {
		st.problems = append(st.problems, Problem{Value: strconv.Itoa(st.dropped) + " more", Reason: ReasonTruncated})
	}
	return st.ids, st.problems
}

type extractState struct {
	ids          []string
	seen         map[string]struct{} // once ids is long enough for a linear scan to cost
	tooMany      int
	tooManyField string
	problems     []Problem
	dropped      int
}

func (st *extractState) problem(p Problem) {
	if len(st.problems) >= MaxProblems {
		st.dropped++
		return
	}
	st.problems = append(st.problems, p)
}

// addID adds id once; past MaxTechniqueIDs it counts instead.
func (st *extractState) addID(id string, f Field) {
	if st.seen == nil && len(st.ids) < 16 {
		for _, x := range st.ids {
			if x == id {
				return
			}
		}
	} else {
		if st.seen == nil {
			st.seen = make(map[string]struct{}, 2*len(st.ids))
			for _, x := range st.ids {
				st.seen[x] = struct{}{}
			}
		}
		if _, ok := st.seen[id]; ok {
			return
		}
	}
	if len(st.ids) >= MaxTechniqueIDs {
		if st.tooMany == 0 {
			st.tooManyField = f.Path
		}
		st.tooMany++
		if st.seen != nil {
			st.seen[id] = struct{}{} // counted once
		}
		return
	}
	st.ids = append(st.ids, id)
	if st.seen != nil {
		st.seen[id] = struct{}{}
	}
}

func (st *extractState) walkMap(m map[string]any, n *trieNode) {
	for _, c := range n.candidates {
		v, ok := m[c.key]
		if !ok {
			continue
		}
		for _, f := range c.node.fields {
			st.leaf(v, f)
		}
		if len(c.node.children) > 0 {
			st.descend(v, c.node)
		}
	}
}

func (st *extractState) descend(v any, n *trieNode) {
	switch x := v.(type) {
	case map[string]any:
		st.walkMap(x, n)
	case []any:
		for _, e := range x {
			st.descend(e, n)
		}
	}
}

func (st *extractState) leaf(v any, f Field) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			st.leaf(e, f)
		}
	case string:
		id, ok, problem := readID(x, f.Kind)
		switch {
		case problem:
			st.problem(Problem{Field: f.Path, Value: short(x), Reason: ReasonNotTechnique})
		case ok:
			st.addID(id, f)
		}
	case nil:
	default:
		st.problem(Problem{Field: f.Path, Value: short(v), Reason: ReasonWrongType})
	}
}

// Carries reports whether src holds a value in one of the technique fields: for id
// fields any value, for tag fields a tag that starts with "attack.t". It is what a
// store's scan selects on (exists, prefix), applied to one decoded alert.
func Carries(src map[string]any, fields []Field) bool {
	for _, f := range fields {
		for _, v := range Values(src, f.Path) {
			if v == nil {
				continue
			}
			if f.Kind != FieldTag {
				return true
			}
			if s, ok := v.(string); ok && len(s) >= 8 && strings.EqualFold(s[:8], "attack.t") {
				return true
			}
		}
	}
	return false
}
