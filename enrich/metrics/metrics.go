// Package metrics defines every Prometheus metric of the enricher daemon, registered on an
// injected Registerer so tests can use a fresh registry.
//
// Names use the namespace "enricher"; counters end in _total, durations are histograms in
// seconds. Label values are low-cardinality by design: never an alert ID, a technique ID or
// an index name.
package metrics

import (
	"sync/atomic"
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
	LivePending     prometheus.Gauge
	LastSuccess     *prometheus.GaugeVec
	Passes          *prometheus.CounterVec
	Quarantined     prometheus.Gauge
	QuarantinedNow  prometheus.Counter
	BackfillLeft    prometheus.Gauge
	BackfillRate    prometheus.Gauge
	BackfillETA     prometheus.Gauge
	BackfillGen     prometheus.Gauge
	Generation      prometheus.Gauge
	NewestGen       prometheus.Gauge
	IndexProblems   *prometheus.GaugeVec
	RulesetInfo     *prometheus.GaugeVec
	RulesetMappings prometheus.Gauge
	RulesetLoaded   prometheus.Gauge
	ValuesSkipped   *prometheus.CounterVec
	StageCalls      *prometheus.CounterVec
	StageDuration   *prometheus.HistogramVec
	PatchesRejected *prometheus.CounterVec
	BatchDuration   prometheus.Histogram
	ReplicaInfo     *prometheus.GaugeVec
	Replicas        prometheus.Gauge
	ShareActive     prometheus.Gauge
	Heartbeats      *prometheus.CounterVec

	// oldest is the time (unix nanoseconds) of the oldest alert the live path knows to be
	// pending; 0 when none. enricher_lag_seconds is computed from it at every scrape.
	oldest atomic.Int64
	now    func() time.Time
}

// Paths of the run loop, as label values.
const (
	PathLive     = "live"
	PathBackfill = "backfill"
	PathOnce     = "once"
	PathOffline  = "offline"
)

// Alert outcomes, as label values of enricher_alerts_processed_total.
var Outcomes = []string{"enriched", "unmapped", "no_technique", "partial", "deferred", "failed",
	"quarantined", "skipped_newer", "skipped_done", "noop"}

// IndexProblemReasons are the label values of enricher_index_problems.
var IndexProblemReasons = []string{"mapping_conflict", "forbidden", "read_only", "field_limit", "no_source", "index_failed"}

// Pass results, as label values of enricher_passes_total.
var PassResults = []string{"progress", "idle", "no_progress", "error"}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{now: time.Now}
	m.AlertsProcessed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "alerts_processed_total",
		Help: "Alerts processed, by path (live, backfill, once, offline) and outcome: enriched, unmapped, no_technique, partial (an optional stage is pending), deferred (a required stage is down), failed (a failed attempt), quarantined, skipped_newer (enriched by a newer generation), skipped_done (already done), noop (nothing changed).",
	}, []string{"path", "outcome"})
	m.BulkItems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "es_bulk_items_total",
		Help: "Bulk write items, by result: written, conflict (409, re-read and retried), retry (429/5xx, retried with backoff), gone (deleted), failed (refused for the alert), index_failed (refused for its index).",
	}, []string{"result"})
	m.ESRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "es_requests_total",
		Help: "Elasticsearch requests, by operation and status class (2xx, 4xx, 5xx, error).",
	}, []string{"operation", "code"})
	m.ESDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "es_request_duration_seconds",
		Help:    "Elasticsearch request durations, by operation (search, pit_open, pit_close, bulk, mget, mapping, state, other).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"operation"})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "lag_seconds",
		Help: "Age of the oldest alert the live path knows to need enrichment (not quarantined, not only waiting for an optional stage); 0 when none. Computed at every scrape.",
	}, m.lag)
	m.LivePending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "pending_alerts",
		Help: "Alerts the last live poll found pending in the live window (with replicas: all of them, not only this replica's slice).",
	})
	m.LastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "last_successful_pass_timestamp_seconds",
		Help: "Unix time of the end of the last pass that completed without error, by path.",
	}, []string{"path"})
	m.Passes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "passes_total",
		Help: "Passes over the alert indices, by path and result: progress (wrote or quarantined alerts), idle (nothing pending), no_progress (pending alerts could not be written), error.",
	}, []string{"path", "result"})
	m.Quarantined = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "quarantined_alerts",
		Help: "Alerts quarantined by this generation, counted in the store at the start of each backfill sweep.",
	})
	m.QuarantinedNow = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "alerts_quarantined_total",
		Help: "Alerts this process quarantined after their attempt budget ran out.",
	})
	m.BackfillLeft = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "backfill_remaining_alerts",
		Help: "Alerts the running backfill sweep has still to go through; 0 when none runs.",
	})
	m.BackfillRate = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "backfill_rate_alerts_per_second",
		Help: "Alerts per second of the running backfill sweep (moving average).",
	})
	m.BackfillETA = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "backfill_eta_seconds",
		Help: "Estimated seconds until the running backfill sweep ends; 0 when none runs.",
	})
	m.BackfillGen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "backfill_generation",
		Help: "Generation whose backfill completed last (its number); 0 before the first.",
	})
	m.Generation = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ruleset_generation",
		Help: "Number of the generation this process writes (0 until registered in the store).",
	})
	m.NewestGen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ruleset_newest_generation",
		Help: "Number of the newest generation registered in the store by any enricher.",
	})
	m.IndexProblems = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "index_problems",
		Help: "Alert indices left out because they cannot be written, by reason (mapping_conflict, forbidden, read_only, field_limit, no_source, closed, unavailable).",
	}, []string{"reason"})
	m.RulesetInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ruleset_info",
		Help: "The ruleset in use (value 1), labelled with its version and the first 12 hex digits of its fingerprint.",
	}, []string{"version", "hash"})
	m.RulesetMappings = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ruleset_mappings",
		Help: "Mappings in the loaded ruleset.",
	})
	m.RulesetLoaded = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ruleset_last_load_successful",
		Help: "Whether the last ruleset load succeeded (1) or failed (0).",
	})
	m.ValuesSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "technique_values_skipped_total",
		Help: "Values in technique fields that were skipped, by reason (wrong_type, not_technique_id, too_many).",
	}, []string{"reason"})
	m.StageCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "stage_calls_total",
		Help: "Pipeline stage calls (one per batch, more while a failing alert is isolated), by stage and result (ok, error, unavailable).",
	}, []string{"stage", "result"})
	m.StageDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "stage_duration_seconds",
		Help:    "Duration of one stage call over one batch.",
		Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 5, 10},
	}, []string{"stage"})
	m.PatchesRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "patches_rejected_total",
		Help: "Stage patches rejected because they wrote outside the stage's namespace.",
	}, []string{"stage"})
	m.BatchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "batch_duration_seconds",
		Help:    "Time to enrich and write one batch, retries included.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.ReplicaInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replica_info",
		Help: "This replica (value 1), labelled with its name (daemon.instance), which its log lines carry too.",
	}, []string{"replica"})
	m.Replicas = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replicas",
		Help: "Replicas sharing the work, as this replica saw them at its last heartbeat: live leases of the newest generation.",
	})
	m.ShareActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replica_share_active",
		Help: "Whether this replica holds a share of the work (1) or waits (0: a newer generation runs elsewhere, or its lease could not be renewed).",
	})
	m.Heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "replica_heartbeats_total",
		Help: "Renewals of this replica's lease in the roster, by result (ok, error).",
	}, []string{"result"})
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(m.AlertsProcessed, m.BulkItems, m.ESRequests, m.ESDuration, lag, m.LivePending,
		m.LastSuccess, m.Passes, m.Quarantined, m.QuarantinedNow, m.BackfillLeft, m.BackfillRate,
		m.BackfillETA, m.BackfillGen, m.Generation, m.NewestGen, m.IndexProblems,
		m.RulesetInfo, m.RulesetMappings, m.RulesetLoaded, m.ValuesSkipped,
		m.StageCalls, m.StageDuration, m.PatchesRejected, m.BatchDuration,
		m.ReplicaInfo, m.Replicas, m.ShareActive, m.Heartbeats)
	// Pre-create the series dashboards and alert rules query, so they exist from the first scrape.
	for _, p := range []string{PathLive, PathBackfill} {
		for _, o := range Outcomes {
			m.AlertsProcessed.WithLabelValues(p, o)
		}
		for _, r := range PassResults {
			m.Passes.WithLabelValues(p, r)
		}
	}
	for _, p := range []string{PathLive, PathBackfill} {
		m.LastSuccess.WithLabelValues(p)
	}
	for _, r := range IndexProblemReasons {
		m.IndexProblems.WithLabelValues(r)
	}
	for _, r := range []string{"written", "conflict", "retry", "gone", "failed", "index_failed"} {
		m.BulkItems.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.Heartbeats.WithLabelValues(r)
	}
	for _, r := range []string{"wrong_type", "not_technique_id", "too_many_techniques", "problems_truncated"} {
		m.ValuesSkipped.WithLabelValues(r)
	}
	return m
}

// SetOldest records the oldest alert the live path knows to be pending; zero: none.
func (m *Metrics) SetOldest(t time.Time) {
	if t.IsZero() {
		m.oldest.Store(0)
		return
	}
	m.oldest.Store(t.UnixNano())
}

func (m *Metrics) lag() float64 {
	o := m.oldest.Load()
	if o == 0 {
		return 0
	}
	d := m.now().Sub(time.Unix(0, o)).Seconds()
	if d < 0 {
		return 0
	}
	return d
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
