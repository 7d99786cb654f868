// Package scrape polls every endpoint's Prometheus /metrics and publishes the few gauges the
// scheduler needs (llm-d-facts §2.7).
package scrape

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// Metric names of the vLLM model-server protocol (llm-d-facts §2.7, §1.8).
const (
	MetricWaiting     = "vllm:num_requests_waiting"
	MetricRunning     = "vllm:num_requests_running"
	MetricKVUsage     = "vllm:kv_cache_usage_perc"
	MetricKVUsageOld  = "vllm:gpu_cache_usage_perc"
	MetricLoRAInfo    = "vllm:lora_requests_info"
	MetricCacheConfig = "vllm:cache_config_info"
)

// wanted lists the families we keep. A vLLM /metrics page is mostly histograms we never read,
// so lines are filtered before the text parser sees them: parsing the whole page 20 times a
// second per endpoint would dominate the picker's idle CPU.
var wanted = [][]byte{
	[]byte(MetricWaiting), []byte(MetricRunning), []byte(MetricKVUsage), []byte(MetricKVUsageOld),
	[]byte(MetricLoRAInfo), []byte(MetricCacheConfig),
}

// filter appends to dst the sample, TYPE and HELP lines of the wanted families in src.
func filter(dst, src []byte) []byte {
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i+1], src[i+1:]
		} else {
			src = nil
		}
		name := line
		if bytes.HasPrefix(name, []byte("# TYPE ")) || bytes.HasPrefix(name, []byte("# HELP ")) {
			name = name[7:]
		} else if len(name) > 0 && name[0] == '#' {
			continue
		}
		for _, w := range wanted {
			if bytes.HasPrefix(name, w) && len(name) > len(w) && isNameEnd(name[len(w)]) {
				dst = append(dst, line...)
				if line[len(line)-1] != '\n' {
					dst = append(dst, '\n')
				}
				break
			}
		}
	}
	return dst
}

func isNameEnd(c byte) bool { return c == '{' || c == ' ' || c == '\t' }

// Parse extracts scheduling metrics from a Prometheus text exposition. scratch is reused between
// calls by the caller's goroutine to keep steady-state scraping allocation-light.
func Parse(page []byte, scratch []byte, now time.Time) (*datastore.Metrics, []byte, error) {
	scratch = filter(scratch[:0], page)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(scratch))
	if err != nil {
		return nil, scratch, fmt.Errorf("parse metrics: %w", err)
	}
	m := &datastore.Metrics{UpdateTime: now}
	waiting, ok := gauge(fams[MetricWaiting])
	if !ok {
		return nil, scratch, fmt.Errorf("metric %s missing", MetricWaiting)
	}
	running, ok := gauge(fams[MetricRunning])
	if !ok {
		return nil, scratch, fmt.Errorf("metric %s missing", MetricRunning)
	}
	// Older simulators and vLLM releases only expose the gpu_ name (llm-d-facts §7 gotcha 1).
	kv, ok := gauge(fams[MetricKVUsage])
	if !ok {
		if kv, ok = gauge(fams[MetricKVUsageOld]); !ok {
			return nil, scratch, fmt.Errorf("metric %s missing", MetricKVUsage)
		}
	}
	m.WaitingQueueSize, m.RunningRequestsSize, m.KVCacheUsagePercent = int(waiting), int(running), kv
	if fam := fams[MetricLoRAInfo]; fam != nil {
		// Each series' value is the time of its last update; the newest one is current.
		var best *dto.Metric
		for _, s := range fam.GetMetric() {
			if best == nil || value(s) > value(best) {
				best = s
			}
		}
		if best != nil {
			for _, lp := range best.GetLabel() {
				switch lp.GetName() {
				case "running_lora_adapters":
					m.ActiveModels = splitList(lp.GetValue())
				case "waiting_lora_adapters":
					m.WaitingModels = splitList(lp.GetValue())
				case "max_lora":
					m.MaxActiveModels, _ = strconv.Atoi(lp.GetValue())
				}
			}
		}
	}
	if fam := fams[MetricCacheConfig]; fam != nil && len(fam.GetMetric()) > 0 {
		for _, lp := range fam.GetMetric()[0].GetLabel() {
			switch lp.GetName() {
			case "block_size":
				m.CacheBlockSize, _ = strconv.Atoi(lp.GetValue())
			case "num_gpu_blocks":
				m.CacheNumBlocks, _ = strconv.Atoi(lp.GetValue())
			}
		}
	}
	return m, scratch, nil
}

// gauge returns the first series' value: text expositions carry no timestamps, so "newest"
// degenerates to "first", as upstream's extractor does (llm-d-facts §2.7).
func gauge(fam *dto.MetricFamily) (float64, bool) {
	if fam == nil || len(fam.GetMetric()) == 0 {
		return 0, false
	}
	return value(fam.GetMetric()[0]), true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
