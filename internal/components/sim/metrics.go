package sim

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bucket boundaries of upstream's histograms (facts §1.8).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5,
		10, 20, 40, 80, 160, 640, 2560}
	tpotBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5,
		10, 20, 40, 80}
	requestLatencyBuckets = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240,
		480, 960, 1920, 7680}
)

// buckets125 is vLLM's 1-2-5 series up to and including limit.
func buckets125(limit int) []float64 {
	var out []float64
	for exp := 1; ; exp *= 10 {
		for _, m := range []int{1, 2, 5} {
			v := m * exp
			if v > limit {
				return out
			}
			out = append(out, float64(v))
		}
	}
}

const (
	labelModel        = "model_name"
	labelFinishReason = "finish_reason"
)

// metrics owns the vllm:* collectors on a private registry, as upstream does.
type metrics struct {
	registry *prometheus.Registry
	base     *modelMetrics // the display model, pre-bound for the hot path
	baseName string

	// Engine-wide gauges carry the display model's name only, LoRA requests included.
	baseRunning, baseWaiting, baseKVUsage, baseGPUCacheUsage prometheus.Gauge

	running, waiting, kvUsage, gpuCacheUsage *prometheus.GaugeVec
	loraInfo                                 *prometheus.GaugeVec
	maxLoras                                 string

	prefixHits, prefixQueries, promptTokens, generationTokens, success *prometheus.CounterVec

	requestPromptTokens, requestGenerationTokens, paramsMaxTokens, maxGenerationTokens *prometheus.HistogramVec
	ttft, requestTPOT                                                                  *prometheus.HistogramVec
	interToken                                                                         *twinHistogram
	e2e, queueTime, inferenceTime, prefillTime, decodeTime                             *prometheus.HistogramVec

	mu     sync.Mutex
	models map[string]*modelMetrics
}

// modelMetrics are the children of every per-model series for one model_name, resolved once
// so a request does no label lookups.
type modelMetrics struct {
	prefixHits, prefixQueries, promptTokens, generationTokens                   prometheus.Counter
	success                                                                     map[string]prometheus.Counter
	requestPromptTokens, requestGenerationTokens, paramsMaxTokens, maxGenTokens prometheus.Observer
	ttft, requestTPOT                                                           prometheus.Observer
	interToken                                                                  *twinCounts
	e2e, queueTime, inferenceTime, prefillTime, decodeTime                      prometheus.Observer
}

func newMetrics(cfg *Config) (*metrics, error) {
	m := &metrics{registry: prometheus.NewRegistry(), models: map[string]*modelMetrics{}, maxLoras: strconv.Itoa(cfg.MaxLoras)}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.registry.MustRegister(v)
		return v
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.registry.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{labelModel})
		m.registry.MustRegister(v)
		return v
	}
	m.running = gauge("vllm:num_requests_running", "Number of requests currently running on GPU.", labelModel)
	m.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labelModel)
	m.kvUsage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labelModel)
	// Simulators before v0.7 and EPPs up to GAIE v1.2 use the older name; exposing both keeps
	// either generation of endpoint picker working (facts §1.8).
	m.gpuCacheUsage = gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).", labelModel)
	cacheConfig := gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig.", "block_size", "num_gpu_blocks")
	m.loraInfo = gauge("vllm:lora_requests_info", "Running stats on lora requests.", "max_lora", "running_lora_adapters", "waiting_lora_adapters")

	m.prefixHits = counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", labelModel)
	m.prefixQueries = counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", labelModel)
	m.promptTokens = counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", labelModel)
	m.generationTokens = counter("vllm:generation_tokens_total", "Number of generation tokens processed.", labelModel)
	m.success = counter("vllm:request_success_total", "Count of successfully processed requests.", labelModel, labelFinishReason)

	tokenBuckets := buckets125(cfg.MaxModelLen)
	m.requestPromptTokens = histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokenBuckets)
	m.requestGenerationTokens = histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", tokenBuckets)
	m.paramsMaxTokens = histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokenBuckets)
	m.maxGenerationTokens = histogram("vllm:max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", tokenBuckets)
	m.ttft = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets)
	m.interToken = newTwinHistogram("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds",
		"Histogram of inter-token latency in seconds.", "Histogram of time per output token in seconds.", tpotBuckets)
	m.registry.MustRegister(m.interToken)
	m.requestTPOT = histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", tpotBuckets)
	m.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", requestLatencyBuckets)
	m.queueTime = histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", requestLatencyBuckets)
	m.inferenceTime = histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", requestLatencyBuckets)
	m.prefillTime = histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", requestLatencyBuckets)
	m.decodeTime = histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", requestLatencyBuckets)

	cacheConfig.WithLabelValues(strconv.Itoa(cfg.BlockSize), strconv.Itoa(cfg.KVCacheSize)).Set(1)
	display := cfg.DisplayModel()
	m.baseName = display
	m.base = m.forModel(display)
	m.baseRunning = m.running.WithLabelValues(display)
	m.baseWaiting = m.waiting.WithLabelValues(display)
	m.baseKVUsage = m.kvUsage.WithLabelValues(display)
	m.baseGPUCacheUsage = m.gpuCacheUsage.WithLabelValues(display)
	m.setKVUsage(0)
	m.setLoras(nil, nil)
	return m, nil
}

// forModel returns (creating once) the children for one model_name.
func (m *metrics) forModel(name string) *modelMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm, ok := m.models[name]; ok {
		return mm
	}
	mm := &modelMetrics{
		prefixHits: m.prefixHits.WithLabelValues(name), prefixQueries: m.prefixQueries.WithLabelValues(name),
		promptTokens: m.promptTokens.WithLabelValues(name), generationTokens: m.generationTokens.WithLabelValues(name),
		success:             map[string]prometheus.Counter{},
		requestPromptTokens: m.requestPromptTokens.WithLabelValues(name), requestGenerationTokens: m.requestGenerationTokens.WithLabelValues(name),
		paramsMaxTokens: m.paramsMaxTokens.WithLabelValues(name), maxGenTokens: m.maxGenerationTokens.WithLabelValues(name),
		ttft: m.ttft.WithLabelValues(name), interToken: m.interToken.forModel(name),
		requestTPOT: m.requestTPOT.WithLabelValues(name), e2e: m.e2e.WithLabelValues(name),
		queueTime: m.queueTime.WithLabelValues(name), inferenceTime: m.inferenceTime.WithLabelValues(name),
		prefillTime: m.prefillTime.WithLabelValues(name), decodeTime: m.decodeTime.WithLabelValues(name),
	}
	// Children for every finish reason are created lazily by the Vec, but binding the common
	// ones here keeps the map read-only afterwards (safe without a lock).
	for _, r := range []string{"stop", "length", "tool_calls", "remote_decode", "cache_threshold"} {
		mm.success[r] = m.success.WithLabelValues(name, r)
	}
	m.models[name] = mm
	return mm
}

func (m *metrics) addRunning(delta int) { m.baseRunning.Add(float64(delta)) }
func (m *metrics) addWaiting(delta int) { m.baseWaiting.Add(float64(delta)) }

func (m *metrics) setKVUsage(v float64) {
	m.baseKVUsage.Set(v)
	m.baseGPUCacheUsage.Set(v)
}

// setLoras publishes the LoRA adapter state; the value is the update time, as in vLLM.
func (m *metrics) setLoras(running, waiting []string) {
	m.loraInfo.Reset()
	m.loraInfo.WithLabelValues(m.maxLoras, strings.Join(running, ","), strings.Join(waiting, ",")).
		Set(float64(time.Now().UnixNano()) / 1e9)
}

// subRequestStats is what one finished sub-request contributes to the metrics.
type subRequestStats struct {
	promptTokens, cachedTokens, generatedTokens int
	maxTokens                                   int // -1 when the request gave none
	finishReason                                string
	queue, prefill, decode                      time.Duration
	simulatedTTFT                               time.Duration
	itlSum                                      time.Duration
	itlCount                                    int
	e2e                                         time.Duration
}

func (mm *modelMetrics) record(s *subRequestStats) {
	mm.promptTokens.Add(float64(s.promptTokens))
	mm.generationTokens.Add(float64(s.generatedTokens))
	mm.requestPromptTokens.Observe(float64(s.promptTokens))
	mm.requestGenerationTokens.Observe(float64(s.generatedTokens))
	if s.maxTokens >= 0 {
		mm.paramsMaxTokens.Observe(float64(s.maxTokens))
	}
	if c, ok := mm.success[s.finishReason]; ok {
		c.Inc()
	}
	mm.queueTime.Observe(s.queue.Seconds())
	mm.prefillTime.Observe(s.prefill.Seconds())
	mm.decodeTime.Observe(s.decode.Seconds())
	mm.inferenceTime.Observe((s.prefill + s.decode).Seconds())
	mm.e2e.Observe(s.e2e.Seconds())
	if s.generatedTokens > 0 {
		mm.ttft.Observe(s.simulatedTTFT.Seconds())
	}
	if s.itlCount > 0 {
		mm.requestTPOT.Observe(s.itlSum.Seconds() / float64(s.itlCount))
	}
}

// observeInterToken records n simulated inter-token delays of d each.
func (mm *modelMetrics) observeInterToken(d time.Duration, n int) {
	mm.interToken.observeN(tpotBuckets, d.Seconds(), n)
}

// forModelFast skips the lock for the display model, which every base-model request uses.
func (m *metrics) forModelFast(name string) *modelMetrics {
	if name == m.baseName {
		return m.base
	}
	return m.forModel(name)
}
