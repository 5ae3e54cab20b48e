package elastic

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

// RequeueResult sums up a requeue.
type RequeueResult struct {
	Matched, Requeued, Conflicts, Failed int
}

// Requeue makes quarantined alerts pending again: those matching query (any
// Elasticsearch query; nil for all) that carry a quarantine marker under root lose the
// marker and their generation stamp, so the daemon's next pass enriches them. Writes are
// guarded like the daemon's; an alert changed meanwhile is counted in Conflicts and left
// as it is (run the command again).
func (s *Store) Requeue(ctx context.Context, root string, query map[string]any) (RequeueResult, error) {
	var res RequeueResult
	filter := []any{map[string]any{"exists": map[string]any{"field": enrich.Under(root, enrich.FieldQuarantineGeneration)}}}
	if len(query) > 0 {
		filter = append(filter, query)
	}
	sc := &scanner{s: s, spec: runner.ScanSpec{PageSize: 500, Stable: true},
		query: map[string]any{"bool": map[string]any{"filter": filter}}}
	defer sc.Close(context.WithoutCancel(ctx))
	for {
		page, err := sc.Next(ctx)
		if err != nil {
			return res, err
		}
		if len(page.Alerts) == 0 {
			return res, nil
		}
		var items []runner.WriteItem
		for _, a := range page.Alerts {
			res.Matched++
			src, err := enrich.DecodeMembers(a.Raw, []string{root})
			if err != nil {
				res.Failed++
				continue
			}
			prev, _ := src[root].(map[string]any)
			next, ok := enrich.RequeueRoot(prev)
			if !ok {
				continue
			}
			b, err := json.Marshal(next)
			if err == nil {
				a.Raw, err = enrich.Splice(a.Raw, map[string][]byte{root: b})
			}
			if err != nil {
				res.Failed++
				continue
			}
			items = append(items, runner.WriteItem{Alert: a, Source: a.Raw})
		}
		if len(items) == 0 {
			continue
		}
		out, err := s.Write(ctx, items)
		if err != nil {
			return res, fmt.Errorf("requeue: %w", err)
		}
		for _, r := range out {
			switch r.Status {
			case runner.ItemWritten:
				res.Requeued++
			case runner.ItemConflict:
				res.Conflicts++
			default:
				res.Failed++
			}
		}
	}
}
