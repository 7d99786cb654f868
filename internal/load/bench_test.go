package load_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/load"
)

// BenchmarkClosedLoop measures the generator's own capacity: 8 clients against one simulator
// with no latency, streamed 4-token answers, generator and simulator sharing this process.
func BenchmarkClosedLoop(b *testing.B) {
	p := stacktest.StartSim(b, model, "sim-0", 1, func(c *sim.Config) { c.MaxNumSeqs = 64 })
	b.ReportAllocs()
	b.ResetTimer()
	rep, err := load.Run(b.Context(), load.Config{
		URL: p.URL, Model: model, Concurrency: 8, Requests: b.N, MaxTokens: 4, Stream: true,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if rep.Failed > 0 {
		b.Fatalf("%d failed: %v", rep.Failed, rep.ErrorSamples)
	}
	b.ReportMetric(rep.ThroughputRPS, "req/s")
}

// BenchmarkIssue5Workload runs issue #5's benchmark workload as `sandbox load` produces it,
// through the in-process gateway and the real endpoint picker to four simulators with the
// issue's settings, at the issue's rates, for the production and the random picker config.
// Everything shares this machine's cores, so it checks the workload and the method; the
// reference numbers come from a cluster. Run:
//
//	go test -run XXX -bench Issue5 -benchtime 1x ./internal/load/
func BenchmarkIssue5Workload(b *testing.B) {
	for _, rate := range []float64{24, 40} {
		for _, picker := range []struct{ name, config string }{{"prefix-aware", ""}, {"random", scheduling.RandomBaselineConfig}} {
			b.Run(fmt.Sprintf("%s/rate=%g", picker.name, rate), func(b *testing.B) {
				for range b.N {
					s := stacktest.Start(b, stacktest.Options{Sims: 4, PickerConfig: picker.config, SimConfig: issue5Sim}, model)
					h0, q0 := prefixHitsB(b, s.Models[model])
					cfg := load.Config{
						URL: s.URL, APIKey: stacktest.Key, Model: model, Rate: rate,
						Warmup: 10 * time.Second, Duration: 45 * time.Second,
						Workload: load.DefaultWorkload(), Stream: true, MaxTokens: 32,
					}
					rep, err := load.Run(b.Context(), cfg, nil)
					if err != nil {
						b.Fatal(err)
					}
					h1, q1 := prefixHitsB(b, s.Models[model])
					b.ReportMetric((h1-h0)/max(q1-q0, 1), "hit-ratio")
					b.ReportMetric(rep.TTFT.P50, "ttft-p50-ms")
					b.ReportMetric(rep.TTFT.P90, "ttft-p90-ms")
					b.ReportMetric(rep.ThroughputRPS, "req/s")
					b.ReportMetric(float64(rep.Failed), "failed")
				}
			})
		}
	}
}

// BenchmarkIssue5Capacity is issue #5's closed-loop capacity comparison: 32 clients, each
// sending the next request of the benchmark workload when its previous answer ends, through the
// in-process gateway to the issue's four simulators; throughput (req/s) per picker config. The
// issue asks the prefix-aware picker for at least 1.4x the random one. Run:
//
//	go test -run XXX -bench Issue5Capacity -benchtime 1x ./internal/load/
func BenchmarkIssue5Capacity(b *testing.B) {
	for _, picker := range []struct{ name, config string }{{"prefix-aware", ""}, {"random", scheduling.RandomBaselineConfig}} {
		b.Run(picker.name, func(b *testing.B) {
			for range b.N {
				s := stacktest.Start(b, stacktest.Options{Sims: 4, PickerConfig: picker.config, SimConfig: issue5Sim}, model)
				h0, q0 := prefixHitsB(b, s.Models[model])
				rep, err := load.Run(b.Context(), load.Config{
					URL: s.URL, APIKey: stacktest.Key, Model: model, Concurrency: 32,
					Warmup: 10 * time.Second, Duration: 45 * time.Second,
					Workload: load.DefaultWorkload(), Stream: true, MaxTokens: 32,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				h1, q1 := prefixHitsB(b, s.Models[model])
				b.ReportMetric(rep.ThroughputRPS, "req/s")
				b.ReportMetric((h1-h0)/max(q1-q0, 1), "hit-ratio")
				b.ReportMetric(rep.TTFT.P90, "ttft-p90-ms")
				b.ReportMetric(float64(rep.Failed), "failed")
			}
		})
	}
}

// issue5Sim is issue #5's simulator: 4 sequences at once, a 96-block KV cache of 16 tokens,
// per-token prefill and decode latency that grows under load.
func issue5Sim(c *sim.Config) {
	c.MaxNumSeqs = 4
	c.EnableKVCache, c.BlockSize, c.KVCacheSize = true, 16, 96
	c.LatencyCalculator = sim.CalculatorPerToken
	c.PrefillOverhead = sim.Duration(10 * time.Millisecond)
	c.PrefillTimePerToken = sim.Duration(time.Millisecond)
	c.InterTokenLatency = sim.Duration(5 * time.Millisecond)
	c.TimeFactorUnderLoad = 1.5
}
