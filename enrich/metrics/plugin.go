package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Plugin call results, the values of enricher_plugin_calls_total's result label.
const (
	PluginResultOK          = "ok"          // the plugin answered
	PluginResultError       = "error"       // the plugin refused the batch or answered badly
	PluginResultCrash       = "crash"       // the process died or the connection broke
	PluginResultTimeout     = "timeout"     // the call hit the plugin's timeout; process killed
	PluginResultUnavailable = "unavailable" // no process to call (down, restart backing off)
	PluginResultCanceled    = "canceled"    // the caller gave up (shutdown)
)

// PluginResults lists every result label value, so series exist from the first scrape.
var PluginResults = []string{
	PluginResultOK, PluginResultError, PluginResultCrash,
	PluginResultTimeout, PluginResultUnavailable, PluginResultCanceled,
}

// PluginMetrics are the per-plugin metrics. The plugin label is the plugin's configured
// name, never anything from an alert.
type PluginMetrics struct {
	// Calls counts Enrich RPC attempts by plugin and result (see PluginResults).
	Calls *prometheus.CounterVec
	// CallDuration observes the duration of each Enrich RPC attempt.
	CallDuration *prometheus.HistogramVec
	// Restarts counts process starts after the first one (crash, timeout, retry).
	Restarts *prometheus.CounterVec
	// Up is 1 while the plugin's process is running and has passed its start checks.
	Up *prometheus.GaugeVec
	// PatchesRejected counts patches a plugin returned that touch fields outside its
	// namespace. The host counts them; the pipeline drops them.
	PatchesRejected *prometheus.CounterVec
	// Info is 1 for each configured plugin, labelled with whether it is required, so
	// alert rules can single out required plugins (join on plugin). Set by SetInfo.
	Info *prometheus.GaugeVec
}

// NewPluginMetrics creates the plugin metrics and registers them on reg. A nil reg
// leaves them unregistered (handy in tests and for callers without metrics).
func NewPluginMetrics(reg prometheus.Registerer) *PluginMetrics {
	const ns = "enricher"
	m := &PluginMetrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "plugin_calls_total",
			Help: "Plugin Enrich calls (one per batch attempt), by plugin and result (ok, error, crash, timeout, unavailable, canceled).",
		}, []string{"plugin", "result"}),
		CallDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "plugin_call_duration_seconds",
			Help:    "Duration of one plugin Enrich call over one batch, including the round trip.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"plugin"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "plugin_restarts_total",
			Help: "Plugin process restarts (after a crash or a timeout), by plugin.",
		}, []string{"plugin"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "plugin_up",
			Help: "Whether the plugin's process is running (1) or not (0).",
		}, []string{"plugin"}),
		PatchesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "plugin_patches_rejected_total",
			Help: "Patches a plugin returned outside its namespace (dropped by the pipeline), by plugin.",
		}, []string{"plugin"}),
		Info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "plugin_info",
			Help: "Configured plugins (value 1), labelled with whether the plugin is required (true or false).",
		}, []string{"plugin", "required"}),
	}
	if reg != nil {
		reg.MustRegister(m.Calls, m.CallDuration, m.Restarts, m.Up, m.PatchesRejected, m.Info)
	}
	return m
}

// Init creates every series of one plugin at zero, so dashboards see it before the
// first call.
func (m *PluginMetrics) Init(plugin string) {
	for _, r := range PluginResults {
		m.Calls.WithLabelValues(plugin, r)
	}
	m.Restarts.WithLabelValues(plugin)
	m.Up.WithLabelValues(plugin)
	m.PatchesRejected.WithLabelValues(plugin)
}

// Call records one Enrich call attempt.
func (m *PluginMetrics) Call(plugin, result string, d time.Duration) {
	m.Calls.WithLabelValues(plugin, result).Inc()
	m.CallDuration.WithLabelValues(plugin).Observe(d.Seconds())
}

// Restart records a process restart.
func (m *PluginMetrics) Restart(plugin string) { m.Restarts.WithLabelValues(plugin).Inc() }

// SetUp records whether the plugin's process is running.
func (m *PluginMetrics) SetUp(plugin string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.Up.WithLabelValues(plugin).Set(v)
}

// SetInfo records a configured plugin and whether it is required:
// enricher_plugin_info{plugin,required} = 1, the other value of required removed.
func (m *PluginMetrics) SetInfo(plugin string, required bool) {
	req, other := "false", "true"
	if required {
		req, other = "true", "false"
	}
	m.Info.DeleteLabelValues(plugin, other)
	m.Info.WithLabelValues(plugin, req).Set(1)
}

// PatchRejected records n patches outside the plugin's namespace.
func (m *PluginMetrics) PatchRejected(plugin string, n int) {
	m.PatchesRejected.WithLabelValues(plugin).Add(float64(n))
}
