package observe

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// The simulator's metric names (vLLM's; shared/facts/llm-d-facts.md §2.7).
const (
	metricRunning       = "vllm:num_requests_running"
	metricWaiting       = "vllm:num_requests_waiting"
	metricKVUsage       = "vllm:kv_cache_usage_perc"
	metricKVUsageOld    = "vllm:gpu_cache_usage_perc"
	metricPrefixHits    = "vllm:prefix_cache_hits_total"
	metricPrefixQueries = "vllm:prefix_cache_queries_total"
	metricSuccess       = "vllm:request_success_total"
	metricTTFT          = "vllm:time_to_first_token_seconds"
)

// Sample is what one scrape of a pod yields; counters and histogram buckets are summed over
// every series (model names, finish reasons), since the dashboard shows per-pod totals.
type Sample struct {
	Time          time.Time
	Running       float64
	Waiting       float64
	KVUsage       float64
	PrefixHits    float64
	PrefixQueries float64
	Success       float64
	// TTFT is the cumulative histogram: upper bound -> count.
	TTFT map[float64]float64
}

// ParseSample reads a Prometheus text page into a Sample.
func ParseSample(page []byte, now time.Time) (Sample, error) {
	fams, err := podmetrics.Parse(bytes.NewReader(page))
	if err != nil {
		return Sample{}, err
	}
	return SampleFrom(fams, now)
}

// SampleFrom picks the dashboard's metrics out of a scraped page's families.
func SampleFrom(fams map[string]*dto.MetricFamily, now time.Time) (Sample, error) {
	if fams[metricRunning] == nil || fams[metricWaiting] == nil {
		return Sample{}, fmt.Errorf("no %s on the page: not a vLLM-compatible server", metricRunning)
	}
	s := Sample{Time: now, TTFT: map[float64]float64{}}
	s.Running = podmetrics.Sum(fams, metricRunning)
	s.Waiting = podmetrics.Sum(fams, metricWaiting)
	if f := fams[metricKVUsage]; f != nil {
		s.KVUsage = maxOf(f)
	} else {
		s.KVUsage = maxOf(fams[metricKVUsageOld])
	}
	s.PrefixHits = podmetrics.Sum(fams, metricPrefixHits)
	s.PrefixQueries = podmetrics.Sum(fams, metricPrefixQueries)
	s.Success = podmetrics.Sum(fams, metricSuccess)
	if f := fams[metricTTFT]; f != nil {
		for _, m := range f.GetMetric() {
			inf := false
			for _, b := range m.GetHistogram().GetBucket() {
				s.TTFT[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				inf = inf || math.IsInf(b.GetUpperBound(), 1)
			}
			// The +Inf bucket is the sample count, which some parsers leave implicit.
			if !inf {
				s.TTFT[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return s, nil
}

func maxOf(f *dto.MetricFamily) float64 {
	var v float64
	for _, m := range f.GetMetric() {
		v = math.Max(v, podmetrics.Value(m))
	}
	return v
}

// history keeps a pod's samples over a window so rates and quantiles cover "the last minute".
type history struct {
	samples []Sample
	window  time.Duration
}

func (h *history) add(s Sample) {
	h.samples = append(h.samples, s)
	cut := 0
	// Keep one sample older than the window as the baseline of the window's deltas.
	for cut+1 < len(h.samples) && s.Time.Sub(h.samples[cut+1].Time) >= h.window {
		cut++
	}
	h.samples = h.samples[cut:]
}

func (h *history) latest() (Sample, bool) {
	if len(h.samples) == 0 {
		return Sample{}, false
	}
	return h.samples[len(h.samples)-1], true
}

// delta returns the newest sample and the oldest one within maxAge of it (the baseline).
func (h *history) delta(maxAge time.Duration) (last, base Sample, ok bool) {
	if len(h.samples) < 2 {
		return Sample{}, Sample{}, false
	}
	last = h.samples[len(h.samples)-1]
	base = last
	for i := len(h.samples) - 2; i >= 0; i-- {
		// A counter going backwards means the pod restarted: nothing before that point counts.
		if last.Time.Sub(h.samples[i].Time) > maxAge || h.samples[i].Success > h.samples[i+1].Success {
			break
		}
		base = h.samples[i]
	}
	return last, base, true
}

// rate is the success counter's per-second rate over the last maxAge.
func (h *history) rate(maxAge time.Duration) float64 {
	last, base, ok := h.delta(maxAge)
	if !ok {
		return 0
	}
	dt := last.Time.Sub(base.Time).Seconds()
	if dt <= 0 {
		return 0
	}
	return math.Max(0, last.Success-base.Success) / dt
}

// ttftDelta adds this pod's TTFT bucket increments over the window to acc.
func (h *history) ttftDelta(acc map[float64]float64) {
	last, base, ok := h.delta(h.window)
	if !ok {
		return
	}
	for le, c := range last.TTFT {
		if d := c - base.TTFT[le]; d > 0 {
			acc[le] += d
		}
	}
}

func (h *history) prefixHitRate() (float64, bool) {
	last, base, ok := h.delta(h.window)
	if !ok {
		return 0, false
	}
	q := last.PrefixQueries - base.PrefixQueries
	if q <= 0 {
		return 0, false
	}
	return math.Max(0, last.PrefixHits-base.PrefixHits) / q, true
}

// quantile estimates the q-quantile of a cumulative histogram (upper bound -> count) by linear
// interpolation inside the bucket, as PromQL's histogram_quantile does.
func quantile(q float64, buckets map[float64]float64) (float64, bool) {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, false
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, le := range bounds {
		c := buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevBound, true
			}
			if c == prevCount {
				return le, true
			}
			return prevBound + (le-prevBound)*(rank-prevCount)/(c-prevCount), true
		}
		prevBound, prevCount = le, c
	}
	return prevBound, true
}
