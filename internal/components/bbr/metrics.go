package bbr

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inference-sandbox/sandbox/internal/versions"
)

// Metric names and labels are those of upstream BBR v1.5 (GAIE pkg/bbr/metrics), so dashboards
// and scrapes work against either implementation; llm-d-facts §3. Upstream's only plugin in the
// sandbox's configuration is body-field-to-header, which is what the plugin labels name.
const (
	modelField       = "model"
	extensionRequest = "request"
	pluginType       = "body-field-to-header"
	pluginName       = "body-field-to-header"
)

type metrics struct {
	success  prometheus.Counter
	notFound *prometheus.CounterVec
	empty    *prometheus.CounterVec
	duration prometheus.Observer
}

// newMetrics registers BBR's series on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bbr_info", Help: "[ALPHA] Build of the running body-based router.",
	}, []string{"commit", "build_ref"})
	success := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bbr_success_total", Help: "[ALPHA] Requests whose model was copied into a header.",
	})
	notFound := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bbr_body_field_not_found_total", Help: "[ALPHA] Request bodies without the field.",
	}, []string{"field"})
	empty := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bbr_body_field_empty_total", Help: "[ALPHA] Request bodies whose field was the empty string.",
	}, []string{"field"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bbr_plugin_duration_seconds",
		Help:    "[ALPHA] Time one plugin spent on one request, by extension point, plugin type and name.",
		Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1},
	}, []string{"extension_point", "plugin_type", "plugin_name"})
	reg.MustRegister(info, success, notFound, empty, duration)
	// The build is identified by the sandbox version; there is no separate commit stamp.
	info.WithLabelValues(versions.Sandbox, versions.Sandbox).Set(1)
	return &metrics{
		success:  success,
		notFound: notFound,
		empty:    empty,
		duration: duration.WithLabelValues(extensionRequest, pluginType, pluginName),
	}
}

// newRegistry is the registry /metrics serves: BBR's series plus the Go and process collectors
// that upstream exposes through controller-runtime's registry.
func newRegistry() (*prometheus.Registry, *metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, newMetrics(reg)
}

func (m *metrics) observe(start time.Time) { m.duration.Observe(time.Since(start).Seconds()) }
