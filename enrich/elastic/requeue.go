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
// guarded like the daemon's. An alert changed since the search read it (an analyst's
// edit, a daemon's write, or a requeue a moment ago that search does not show yet) is
// re-read in real time and requeued if it is still quarantined, up to requeueRounds
// times; what still conflicts then is counted in Conflicts (run the command again).
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
		res.Matched += len(page.Alerts)
		todo := page.Alerts
		for round := 1; len(todo) > 0; round++ {
			conflicted, err := s.requeueOnce(ctx, root, todo, &res)
			if err != nil {
				return res, err
			}
			if len(conflicted) == 0 {
				break
			}
			if round == requeueRounds {
				res.Conflicts += len(conflicted)
				break
			}
			if todo, err = s.Reread(ctx, conflicted); err != nil {
				return res, fmt.Errorf("requeue: %w", err)
			}
		}
	}
}

// requeueRounds bounds the re-reads of alerts that keep changing under a requeue.
const requeueRounds = 3

// requeueOnce writes the requeued root of each alert still quarantined and returns the
// alerts whose write conflicted.
func (s *Store) requeueOnce(ctx context.Context, root string, alerts []*enrich.Alert, res *RequeueResult) ([]*enrich.Alert, error) {
	var items []runner.WriteItem
	for _, a := range alerts {
		src, err := enrich.DecodeMembers(a.Raw, []string{root})
		if err != nil {
			res.Failed++
			continue
		}
		prev, _ := src[root].(map[string]any)
		next, ok := enrich.RequeueRoot(prev)
		if !ok {
			continue // not quarantined (any more): nothing to do
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
		return nil, nil
	}
	out, err := s.Write(ctx, items)
	if err != nil {
		return nil, fmt.Errorf("requeue: %w", err)
	}
	var conflicted []*enrich.Alert
	for i, r := range out {
		switch r.Status {
		case runner.ItemWritten:
			res.Requeued++
		case runner.ItemConflict:
			conflicted = append(conflicted, items[i].Alert)
		default:
			res.Failed++
		}
	}
	return conflicted, nil
}
