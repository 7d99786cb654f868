package sim

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// twinHistogram backs vllm:inter_token_latency_seconds and vllm:time_per_output_token_seconds,
// which vLLM fills with the very same observations (one per inter-token delay). Sharing one
// set of counts halves the work, and observeN lets a zero-latency request record all its
// delays at once instead of one Observe per token.
type twinHistogram struct {
	names   [2]*prometheus.Desc
	buckets []float64

	mu     sync.Mutex
	series map[string]*twinCounts
}

type twinCounts struct {
	label  string
	counts []atomic.Uint64 // per bucket, last one is +Inf; not cumulative
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newTwinHistogram(nameA, nameB, helpA, helpB string, buckets []float64) *twinHistogram {
	return &twinHistogram{
		names: [2]*prometheus.Desc{
			prometheus.NewDesc(nameA, helpA, []string{labelModel}, nil),
			prometheus.NewDesc(nameB, helpB, []string{labelModel}, nil),
		},
		buckets: buckets,
		series:  map[string]*twinCounts{},
	}
}

// forModel returns the counts of one model_name, creating them once.
func (h *twinHistogram) forModel(name string) *twinCounts {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.series[name]; ok {
		return c
	}
	c := &twinCounts{label: name, counts: make([]atomic.Uint64, len(h.buckets)+1)}
	h.series[name] = c
	return c
}

// observeN records n observations of v seconds.
func (c *twinCounts) observeN(buckets []float64, v float64, n int) {
	if n <= 0 {
		return
	}
	i := sort.SearchFloat64s(buckets, v) // first bucket with upper bound >= v
	c.counts[i].Add(uint64(n))
	for {
		old := c.sum.Load()
		if c.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v*float64(n))) {
			break
		}
	}
	c.count.Add(uint64(n))
}

// Describe implements prometheus.Collector.
func (h *twinHistogram) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.names[0]
	ch <- h.names[1]
}

// Collect implements prometheus.Collector. Counts are read without a global snapshot, as
// client_golang's own histograms also allow a scrape to see a request half-recorded.
func (h *twinHistogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	all := make([]*twinCounts, 0, len(h.series))
	for _, c := range h.series {
		all = append(all, c)
	}
	h.mu.Unlock()
	for _, c := range all {
		cumulative := make(map[float64]uint64, len(h.buckets))
		var acc uint64
		for i, ub := range h.buckets {
			acc += c.counts[i].Load()
			cumulative[ub] = acc
		}
		count := acc + c.counts[len(h.buckets)].Load()
		sum := math.Float64frombits(c.sum.Load())
		for _, d := range h.names {
			ch <- prometheus.MustNewConstHistogram(d, count, sum, cumulative, c.label)
		}
	}
}
