package enrich

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Generation identifies what wrote an alert's enrichment: the fingerprint (Hash) of
// everything that shapes the written object, and its order (Number) among all
// fingerprints the store has seen. Numbers are assigned by the store when a daemon
// first runs a fingerprint, so a later ruleset is a larger number on every replica.
// Number 0 means unordered (the offline enrich command): only the hash is compared.
type Generation struct {
	Number       int64
	Hash         string
	RulesVersion string
}

// Disposition says what an alert needs from a generation. Classify decides it; it is
// the one place that says whether an alert is done.
type Disposition int

// Dispositions.
const (
	// NeedsEnrichment: never enriched, or by an older generation.
	NeedsEnrichment Disposition = iota
	// NeedsStages: enriched by this generation with optional stages still pending.
	NeedsStages
	// Done: enriched by this generation.
	Done
	// Newer: enriched by a newer generation; never overwritten.
	Newer
	// Quarantined: quarantined by this generation or a newer one.
	Quarantined
)

func (d Disposition) String() string {
	return [...]string{"needs_enrichment", "needs_stages", "done", "newer", "quarantined"}[d]
}

// State is what an alert's root object says about its enrichment.
type State struct {
	Generation    int64
	Hash          string
	Pending       []string
	Quarantined   bool
	QuarantineGen int64
	QuarantineN   int64 // attempts recorded in the quarantine marker
}

// ReadState reads the state fields under root from a decoded _source (any spelling).
func ReadState(src map[string]any, root string) State {
	var st State
	if v := Values(src, Under(root, FieldGeneration)); len(v) == 1 {
		st.Generation, _ = toInt(v[0])
	}
	if v := Values(src, Under(root, FieldRulesetHash)); len(v) == 1 {
		st.Hash, _ = v[0].(string)
	}
	for _, v := range Values(src, Under(root, PendingField)) {
		if s, ok := v.(string); ok {
			st.Pending = append(st.Pending, s)
		}
	}
	if v := Values(src, Under(root, FieldQuarantineGeneration)); len(v) == 1 {
		st.Quarantined = true
		st.QuarantineGen, _ = toInt(v[0])
	}
	if v := Values(src, Under(root, "quarantine.attempts")); len(v) == 1 {
		st.QuarantineN, _ = toInt(v[0])
	}
	return st
}

// Classify decides what an alert with state st needs from generation g.
func (g Generation) Classify(st State) Disposition {
	if g.Number == 0 { // unordered: by hash alone
		switch {
		case st.Quarantined && st.QuarantineGen == 0 && st.Hash == g.Hash:
			return Quarantined
		case st.Hash != g.Hash:
			return NeedsEnrichment
		case len(st.Pending) > 0:
			return NeedsStages
		}
		return Done
	}
	switch {
	case st.Quarantined && st.QuarantineGen >= g.Number:
		return Quarantined
	case st.Generation > g.Number:
		return Newer
	case st.Generation < g.Number || st.Hash != g.Hash:
		return NeedsEnrichment
	case len(st.Pending) > 0:
		return NeedsStages
	}
	return Done
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		f, err := x.Float64()
		return int64(f), err == nil && f == math.Trunc(f)
	case float64:
		return int64(x), x == math.Trunc(x)
	case int64:
		return x, true
	case int:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// String renders a generation for logs.
func (g Generation) String() string {
	h := g.Hash
	if len(h) > 12 {
		h = h[:12]
	}
	return fmt.Sprintf("%d (%s)", g.Number, h)
}

// RequeueRoot returns the root object of a quarantined alert made pending again: the
// quarantine marker and the generation stamp removed (so that any generation enriches
// it), everything else as it was. ok is false when the root holds no quarantine marker.
func RequeueRoot(prev map[string]any) (root map[string]any, ok bool) {
	if _, q := prev[FieldQuarantine]; !q {
		return nil, false
	}
	root = make(map[string]any, len(prev))
	for k, v := range prev {
		if k != FieldQuarantine && k != "ruleset" {
			root[k] = v
		}
	}
	if root[FieldStatus] == StatusQuarantined {
		delete(root, FieldStatus)
	}
	return root, true
}
