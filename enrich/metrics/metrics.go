// Package metrics defines every Prometheus metric of the enricher daemon, registered on an
// injected Registerer so tests can use a fresh registry.
//
// Names use the namespace "enricher"; counters end in _total, durations are histograms in
// seconds. Label values are low-cardinality by design: never an alert ID, a technique ID or
// an index name.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "enricher"

// Metrics are the daemon's metrics.
type Metrics struct {
	AlertsProcessed *prometheus.CounterVec
	BulkItems       *prometheus.CounterVec
	ESRequests      *prometheus.CounterVec
	ESDuration      *prometheus.HistogramVec
	Lag             prometheus.Gauge
	Pending         prometheus.Gauge
	LastSuccess     prometheus.Gauge
	Runs            *prometheus.CounterVec
	RulesetInfo     *prometheus.GaugeVec
	RulesetMappings prometheus.Gauge
	RulesetLoaded   prometheus.Gauge
	ValuesSkipped   *prometheus.CounterVec
	StageCalls      *prometheus.CounterVec
	StageDuration   *prometheus.HistogramVec
	PatchesRejected *prometheus.CounterVec
	BatchDuration   prometheus.Histogram
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		AlertsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "alerts_processed_total",
			Help: "Alerts processed, by outcome: enriched, unmapped, no_technique, partial (an optional stage is pending), deferred (a required stage is down), failed (could not be written).",
		}, []string{"outcome"}),
		BulkItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "es_bulk_items_total",
			Help: "Bulk update items, by result: updated, noop, conflict (409, re-read and retried), retry (429/5xx, retried with backoff), not_found, failed (other 4xx or retries exhausted).",
		}, []string{"result"}),
		ESRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "es_requests_total",
			Help: "Elasticsearch requests, by operation and status class (2xx, 4xx, 5xx, error).",
		}, []string{"operation", "code"}),
		ESDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "es_request_duration_seconds",
			Help:    "Elasticsearch request durations, by operation (search, pit_open, pit_close, bulk, mget, mapping, refresh, other).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		Lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "lag_seconds",
			Help: "Age of the oldest alert still pending enrichment at the start of the last poll; 0 when none is pending.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "pending_alerts",
			Help: "Alerts pending enrichment at the start of the last poll.",
		}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_run_timestamp_seconds",
			Help: "Unix time of the end of the last poll that completed without error.",
		}),
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "poll_runs_total",
			Help: "Polls of the alert indices, by result (success, error).",
		}, []string{"result"}),
		RulesetInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ruleset_info",
			Help: "The ruleset in use (value 1), labelled with its version and the first 12 hex digits of its hash.",
		}, []string{"version", "hash"}),
		RulesetMappings: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ruleset_mappings",
			Help: "Mappings in the loaded ruleset.",
		}),
		RulesetLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ruleset_last_load_successful",
			Help: "Whether the last ruleset load succeeded (1) or failed (0).",
		}),
		ValuesSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "technique_values_skipped_total",
			Help: "Values in technique fields that were skipped, by reason (wrong_type, not_technique_id).",
		}, []string{"reason"}),
		StageCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "stage_calls_total",
			Help: "Pipeline stage calls (one per batch), by stage and result (ok, error, unavailable).",
		}, []string{"stage", "result"}),
		StageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "stage_duration_seconds",
			Help:    "Duration of one stage call over one batch.",
			Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 5, 10},
		}, []string{"stage"}),
		PatchesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "patches_rejected_total",
			Help: "Stage patches rejected because they wrote outside the stage's namespace.",
		}, []string{"stage"}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "batch_duration_seconds",
			Help:    "Time to enrich and write one batch, retries included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	reg.MustRegister(m.AlertsProcessed, m.BulkItems, m.ESRequests, m.ESDuration, m.Lag, m.Pending,
		m.LastSuccess, m.Runs, m.RulesetInfo, m.RulesetMappings, m.RulesetLoaded, m.ValuesSkipped,
		m.StageCalls, m.StageDuration, m.PatchesRejected, m.BatchDuration)
	// Pre-create the series dashboards and alert rules query, so they exist from the first scrape.
	for _, o := range []string{"enriched", "unmapped", "no_technique", "partial", "deferred", "failed"} {
		m.AlertsProcessed.WithLabelValues(o)
	}
	for _, r := range []string{"updated", "noop", "conflict", "retry", "not_found", "failed"} {
		m.BulkItems.WithLabelValues(r)
	}
	for _, r := range []string{"success", "error"} {
		m.Runs.WithLabelValues(r)
	}
	for _, r := range []string{"wrong_type", "not_technique_id"} {
		m.ValuesSkipped.WithLabelValues(r)
	}
	return m
}

// StageCall implements enrich.Observer.
func (m *Metrics) StageCall(stage, result string, d time.Duration) {
	m.StageCalls.WithLabelValues(stage, result).Inc()
	m.StageDuration.WithLabelValues(stage).Observe(d.Seconds())
}

// PatchRejected implements enrich.Observer.
func (m *Metrics) PatchRejected(stage string) {
	m.PatchesRejected.WithLabelValues(stage).Inc()
}

// SetRuleset records the ruleset in use.
func (m *Metrics) SetRuleset(version, hash string, mappings int) {
	if len(hash) > 12 {
		hash = hash[:12]
	}
	m.RulesetInfo.Reset()
	m.RulesetInfo.WithLabelValues(version, hash).Set(1)
	m.RulesetMappings.Set(float64(mappings))
	m.RulesetLoaded.Set(1)
}
