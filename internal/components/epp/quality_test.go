package epp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
)

// BenchmarkQuality is an in-process version of the quality workload: four simulators
// (max-num-seqs 4, KV cache of 96 blocks of 16 tokens, per-token prefill), eight prompt families
// of a ~2,000-character system prompt plus a distinct question, 32 streamed tokens, Poisson
// arrivals. It reports the simulators' prefix-cache hit ratio and TTFT (first SSE data line from
// the scheduled send time) for the production config and the random picker. Everything shares
// this process's cores, so it is a check of the design, not the reference table, which comes
// from the gateway and `sandbox load`. Run: go test -run XXX -bench Quality -benchtime 1x.
func BenchmarkQuality(b *testing.B) {
	for _, rate := range []float64{24, 40} {
		for _, tc := range []struct{ name, config string }{{"prefix-aware", ""}, {"random", scheduling.RandomBaselineConfig}} {
			b.Run(fmt.Sprintf("%s/rate=%g", tc.name, rate), func(b *testing.B) {
				for range b.N {
					runQuality(b, tc.config, rate, 5*time.Second, 20*time.Second)
				}
			})
		}
	}
}

func runQuality(b *testing.B, config string, rate float64, warmup, measure time.Duration) {
	addrs := startSims(b, 4, func(c *sim.Config) {
		c.MaxNumSeqs = 4
		c.EnableKVCache = true
		c.BlockSize = 16
		c.KVCacheSize = 96
		c.LatencyCalculator = sim.CalculatorPerToken
		c.PrefillOverhead = sim.Duration(10 * time.Millisecond)
		c.PrefillTimePerToken = sim.Duration(time.Millisecond)
		c.InterTokenLatency = sim.Duration(5 * time.Millisecond)
		c.TimeFactorUnderLoad = 1.5
	})
	srv := startPicker(b, config, staticSpecs(addrs...))
	waitScraped(b, srv)
	client := dial(b, srv)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	rng := rand.New(rand.NewPCG(7, 7))
	words := strings.Fields("river stone cloud maple copper lantern violet harbor summit meadow falcon ember quartz willow canyon orbit")
	families := make([]string, 8)
	for i := range families {
		var sb strings.Builder
		fmt.Fprintf(&sb, "System prompt of product family %d. ", i)
		for sb.Len() < 2000 {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		families[i] = sb.String()
	}

	// The best hit ratio this workload allows: the system prompt's full blocks over the whole
	// prompt, in the simulator's own tokens.
	sysTokens, allTokens := tokens(b, addrs[0], families[0]), tokens(b, addrs[0], families[0]+" Question 123456789:"+strings.Repeat(" meadow", 18))
	b.ReportMetric(float64(sysTokens/16*16)/float64(allTokens), "hit-ratio-max")

	var mu sync.Mutex
	var ttfts []time.Duration
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+measure)
	var hits0, queries0 float64
	baselined := false
	next := start
	for next.Before(end) {
		if !baselined && !next.Before(measureFrom) {
			time.Sleep(time.Until(measureFrom))
			hits0, queries0 = cacheCounters(b, addrs)
			baselined = true
		}
		time.Sleep(time.Until(next))
		scheduled := next
		var q strings.Builder
		fmt.Fprintf(&q, "Question %d:", rng.Uint32())
		for range 18 {
			q.WriteString(" " + words[rng.IntN(len(words))])
		}
		prompt := families[rng.IntN(len(families))] + q.String()
		measured := !scheduled.Before(measureFrom)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ttft, err := streamOnce(client, httpc, prompt, scheduled)
			if err != nil {
				failed.Add(1)
				return
			}
			if measured {
				done.Add(1)
				mu.Lock()
				ttfts = append(ttfts, ttft)
				mu.Unlock()
			}
		}()
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
	}
	wg.Wait()
	hits1, queries1 := cacheCounters(b, addrs)
	if len(ttfts) == 0 {
		b.Fatalf("no request completed (%d failed)", failed.Load())
	}
	slices.Sort(ttfts)
	pct := func(p float64) float64 { return float64(ttfts[int(p*float64(len(ttfts)-1))].Microseconds()) / 1e3 }
	b.ReportMetric((hits1-hits0)/max(queries1-queries0, 1), "hit-ratio")
	b.ReportMetric(pct(0.5), "ttft-p50-ms")
	b.ReportMetric(pct(0.9), "ttft-p90-ms")
	b.ReportMetric(float64(done.Load())/measure.Seconds(), "req/s")
	b.ReportMetric(float64(failed.Load()), "failed")
}

// streamOnce routes one streamed completion through the picker, sends it to the chosen
// simulator and returns the time from the scheduled send to the first SSE data line.
func streamOnce(c extprocv3.ExternalProcessorClient, httpc *http.Client, prompt string, scheduled time.Time) (time.Duration, error) {
	body := fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":32,"ignore_eos":true,"stream":true}`, simModel, prompt)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, stream, err := sendRequest(ctx, c, "/v1/completions", []byte(body), 16384)
	if err != nil {
		return 0, err
	}
	defer stream.CloseSend()
	if res.immediate != nil {
		return 0, fmt.Errorf("picker: %s", res.immediate.GetBody())
	}
	resp, err := httpc.Post("http://"+res.dest+"/v1/completions", "application/json", strings.NewReader(string(res.body)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("simulator status %d", resp.StatusCode)
	}
	var ttft time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if ttft == 0 && strings.HasPrefix(sc.Text(), "data:") {
			ttft = time.Since(scheduled)
		}
	}
	// Close the picker's books on this request as a data plane does at the end of a response.
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(":status", "200", "content-type", "text/event-stream"), EndOfStream: true}}})
	return ttft, sc.Err()
}

func cacheCounters(t testing.TB, addrs []string) (hits, queries float64) {
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fams["vllm:prefix_cache_hits_total"].GetMetric() {
			hits += m.GetCounter().GetValue()
		}
		for _, m := range fams["vllm:prefix_cache_queries_total"].GetMetric() {
			queries += m.GetCounter().GetValue()
		}
	}
	return hits, queries
}

// tokens counts a prompt's tokens with the simulator's /tokenize.
func tokens(t testing.TB, addr, prompt string) int {
	body := fmt.Sprintf(`{"model":%q,"prompt":%q}`, simModel, prompt)
	resp, err := http.Post("http://"+addr+"/tokenize", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Count == 0 {
		t.Fatalf("tokenize: %v %+v", err, out)
	}
	return out.Count
}
