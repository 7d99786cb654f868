package epp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

// metrics are the picker's own Prometheus series, named and labelled as GAIE v1.5 does
// (llm-d-facts §2.13) so that dashboards and e2e assertions work against either picker.
type metrics struct {
	reg             *prometheus.Registry
	requestTotal    *prometheus.CounterVec
	requestErrors   *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	running         *prometheus.GaugeVec
	schedE2E        prometheus.Histogram
	schedAttempts   *prometheus.CounterVec
	pluginDuration  *prometheus.HistogramVec
	prefixHitRatio  prometheus.Histogram
	prefixHitBytes  prometheus.Histogram
}

var modelLabels = []string{"model_name", "target_model_name"}

func newMetrics(store *datastore.Store, poolName string, staleness time.Duration, indexSize func() int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requestTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "inference_objective", Name: "request_total",
			Help: "Counter of inference objective requests broken out for each model and target model.",
		}, append(modelLabels, "priority")),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "inference_objective", Name: "request_error_total",
			Help: "Counter of inference objective requests errors broken out for each model and target model.",
		}, append(modelLabels, "error_code")),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "inference_objective", Name: "request_duration_seconds",
			Help: "Inference objective response latency distribution in seconds for each model and target model.",
			Buckets: []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
				15, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600},
		}, modelLabels),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: "inference_objective", Name: "running_requests",
			Help: "Inference objective number of running requests in each model.",
		}, []string{"model_name"}),
		schedE2E: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "inference_extension", Name: "scheduler_e2e_duration_seconds",
			Help:    "End-to-end scheduling latency distribution in seconds.",
			Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1},
		}),
		schedAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "inference_extension", Name: "scheduler_attempts_total",
			Help: "Total number of scheduling attempts.",
		}, []string{"status", "target_model_name", "pod_name", "namespace", "port"}),
		pluginDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "inference_extension", Name: "plugin_duration_seconds",
			Help:    "Plugin processing latency distribution in seconds for each extension point, plugin type and plugin name.",
			Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1},
		}, []string{"extension_point", "plugin_type", "plugin_name"}),
		prefixHitRatio: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "inference_extension", Name: "prefix_indexer_hit_ratio",
			Help:    "Ratio of prefix length matched to total prefix length in the cache lookup.",
			Buckets: prometheus.LinearBuckets(0, 0.1, 11),
		}),
		prefixHitBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "inference_extension", Name: "prefix_indexer_hit_bytes",
			Help:    "Length of the prefix match in number of bytes in the cache lookup.",
			Buckets: append([]float64{0}, prometheus.ExponentialBuckets(16, 2, 13)...),
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Subsystem: "inference_extension", Name: "info",
		Help:        "General information of the current build of Inference Extension.",
		ConstLabels: prometheus.Labels{"commit": versions.Sandbox, "build_ref": versions.Sandbox},
	})
	info.Set(1)
	m.reg.MustRegister(m.requestTotal, m.requestErrors, m.requestDuration, m.running, m.schedE2E,
		m.schedAttempts, m.pluginDuration, m.prefixHitRatio, m.prefixHitBytes, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&poolCollector{store: store, pool: poolName, staleness: staleness})
	if indexSize != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Subsystem: "inference_extension", Name: "prefix_indexer_size",
			Help: "Size of the prefix indexer.",
		}, func() float64 { return float64(indexSize()) }))
	}
	return m
}

// observerFor hands the scheduler pre-resolved plugin-duration observers.
func (m *metrics) observerFor(point string, tn scheduling.TypedName) scheduling.Observer {
	return m.pluginDuration.WithLabelValues(point, tn.Type, tn.Name)
}

var (
	descAvgKV = prometheus.NewDesc("inference_pool_average_kv_cache_utilization",
		"The average kv cache utilization for an inference server pool.", []string{"name"}, nil)
	descAvgQueue = prometheus.NewDesc("inference_pool_average_queue_size",
		"The average number of requests pending in the model server queue.", []string{"name"}, nil)
	descAvgRunning = prometheus.NewDesc("inference_pool_average_running_requests",
		"The average number of requests currently being processed by model servers in the pool.", []string{"name"}, nil)
	descReady = prometheus.NewDesc("inference_pool_ready_pods",
		"The number of ready pods in the inference server pool.", []string{"name"}, nil)
	descPerPodQueue = prometheus.NewDesc("inference_pool_per_pod_queue_size",
		"The total number of requests pending in the model server queue for each underlying pod.",
		[]string{"name", "model_server_pod"}, nil)
)

// poolCollector computes the pool gauges from the store at scrape time. Upstream refreshes them
// on a 5 s timer; computing on demand gives the same values without a goroutine.
type poolCollector struct {
	store     *datastore.Store
	pool      string
	staleness time.Duration
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAvgKV
	ch <- descAvgQueue
	ch <- descAvgRunning
	ch <- descReady
	ch <- descPerPodQueue
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	var kv, queue, running float64
	ready := 0
	eps := c.store.Endpoints()
	for _, e := range eps {
		m := e.Metrics()
		kv += m.KVCacheUsagePercent
		queue += float64(m.WaitingQueueSize)
		running += float64(m.RunningRequestsSize)
		if e.Fresh(now, c.staleness) {
			ready++
		}
		ch <- prometheus.MustNewConstMetric(descPerPodQueue, prometheus.GaugeValue, float64(m.WaitingQueueSize), c.pool, e.Name)
	}
	if n := float64(len(eps)); n > 0 {
		kv, queue, running = kv/n, queue/n, running/n
	}
	ch <- prometheus.MustNewConstMetric(descAvgKV, prometheus.GaugeValue, kv, c.pool)
	ch <- prometheus.MustNewConstMetric(descAvgQueue, prometheus.GaugeValue, queue, c.pool)
	ch <- prometheus.MustNewConstMetric(descAvgRunning, prometheus.GaugeValue, running, c.pool)
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, float64(ready), c.pool)
}
