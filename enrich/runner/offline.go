package runner

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// Offline enriches alerts read from a stream (the enrich command): the same processor
// as the daemon's, over a sink that keeps each alert's new _source in memory. There is
// no state store, so the generation is unordered (number 0) and an alert already
// enriched with the same fingerprint is left as it is.
type Offline struct {
	proc *processor
	g    *generation
	sink *memSink
}

// NewOffline returns an offline runner for a pipeline.
func NewOffline(p *enrich.Pipeline, o Options, m *metrics.Metrics, log *slog.Logger) *Offline {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.New(nil)
	}
	sink := &memSink{out: map[string][]byte{}}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 1
	}
	proc := &processor{store: sink, o: o, m: m, log: log, attempts: newAttempts(), written: newWritten(),
		health: newHealth(o.IndexRetry, m, log), sleep: enrich.Sleep, now: time.Now}
	return &Offline{proc: proc, g: &generation{src: p, p: p, gen: p.Generation()}, sink: sink}
}

// Enrich processes a batch and returns, per alert, its new _source, or nil where it
// stays as it was (nothing to add, already enriched, or a required stage down). Alerts
// must have Raw set and distinct IDs.
func (o *Offline) Enrich(ctx context.Context, alerts []*enrich.Alert) ([][]byte, error) {
	o.sink.reset()
	_, err := o.proc.process(ctx, o.g, metrics.PathOffline, alerts)
	out := make([][]byte, len(alerts))
	for i, a := range alerts {
		out[i] = o.sink.take(a.Key())
	}
	return out, err
}

// memSink is a Store that keeps what is written.
type memSink struct {
	mu  sync.Mutex
	out map[string][]byte
	seq int64
}

func (s *memSink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = map[string][]byte{}
}

func (s *memSink) take(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out[key]
}

func (s *memSink) Prepare(context.Context, []string) ([]string, []IndexProblem, error) {
	return nil, nil, nil
}

func (s *memSink) Scan(context.Context, ScanSpec) (Scanner, error) { return nil, errNoScan }

func (s *memSink) Write(_ context.Context, items []WriteItem) ([]WriteResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]WriteResult, len(items))
	for i, it := range items {
		s.out[it.Alert.Key()] = it.Source
		s.seq++
		res[i] = WriteResult{Status: ItemWritten, Code: 200, SeqNo: s.seq}
	}
	return res, nil
}

func (s *memSink) Reread(context.Context, []*enrich.Alert) ([]*enrich.Alert, error) { return nil, nil }

var errNoScan = errorString("offline sink cannot scan")

type errorString string

func (e errorString) Error() string { return string(e) }

// LineID names the alert read from line n of a stream.
func LineID(n int) string { return "line-" + strconv.Itoa(n) }
