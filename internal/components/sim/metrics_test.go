package sim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func chatBody(prompt string, maxTokens int, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":%d,"stream":%v}`,
		testModel, prompt, maxTokens, stream)
}

func TestMetricsCountRequests(t *testing.T) {
	_, ts := newTestServer(t, nil)
	before := scrape(t, ts.URL)
	const n = 7
	var promptTokens, genTokens int
	for i := 0; i < n; i++ {
		status, body, _ := post(t, ts.URL+"/v1/chat/completions", chatBody("count me", 8, false))
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		promptTokens += countTokens("### user: count me\n")
		genTokens += countTokens(body[strings.Index(body, `"content":"`)+11 : strings.Index(body, `"}}]`)])
	}
	// Errors must not count as successes.
	post(t, ts.URL+"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`)
	after := scrape(t, ts.URL)
	delta := func(name string) float64 { return value(after, name, modelLabel()) - value(before, name, modelLabel()) }
	success := 0.0
	for _, r := range []string{"stop", "length"} {
		l := map[string]string{"model_name": testModel, "finish_reason": r}
		success += value(after, "vllm:request_success_total", l) - value(before, "vllm:request_success_total", l)
	}
	if success != n {
		t.Errorf("request_success_total grew by %v, want %d", success, n)
	}
	for name, want := range map[string]float64{
		"vllm:prompt_tokens_total":           float64(promptTokens),
		"vllm:generation_tokens_total":       float64(genTokens),
		"vllm:e2e_request_latency_seconds":   n,
		"vllm:time_to_first_token_seconds":   n,
		"vllm:request_prompt_tokens":         n,
		"vllm:request_generation_tokens":     n,
		"vllm:request_params_max_tokens":     n,
		"vllm:max_num_generation_tokens":     n,
		"vllm:request_queue_time_seconds":    n,
		"vllm:inter_token_latency_seconds":   float64(genTokens - n),
		"vllm:time_per_output_token_seconds": float64(genTokens - n),
	} {
		if got := delta(name); got != want {
			t.Errorf("%s grew by %v, want %v", name, got, want)
		}
	}
	if m := series(after, "vllm:cache_config_info", map[string]string{"block_size": "16", "num_gpu_blocks": "1024"}); m == nil || m.Gauge.GetValue() != 1 {
		t.Error("vllm:cache_config_info{block_size=16,num_gpu_blocks=1024} missing")
	}
	// Bucket layouts are part of the contract with dashboards and scalers (the parser adds +Inf).
	ttft := series(after, "vllm:time_to_first_token_seconds", modelLabel()).Histogram
	if b := ttft.GetBucket(); len(b) != 23 || b[0].GetUpperBound() != 0.001 || b[21].GetUpperBound() != 2560 {
		t.Errorf("TTFT buckets = %v", b)
	}
	prompt := series(after, "vllm:request_prompt_tokens", modelLabel()).Histogram
	if b := prompt.GetBucket(); len(b) != 11 || b[9].GetUpperBound() != 1000 {
		t.Errorf("1-2-5 buckets up to max-model-len 1024 = %v", b)
	}
	for _, name := range []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:num_requests_waiting",
		"vllm:lora_requests_info", "vllm:request_decode_time_seconds", "vllm:request_prefill_time_seconds",
		"vllm:request_inference_time_seconds", "vllm:max_num_generation_tokens", "vllm:request_time_per_output_token_seconds",
		"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"} {
		if _, ok := after[name]; !ok {
			t.Errorf("metric %s not exposed", name)
		}
	}
}

// startStreams opens n streaming chat requests and returns once each has its response
// headers or an error; cancel ends them.
func startStreams(t *testing.T, url string, n int, body string) (cancel func(), wait func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
	}
	return cancelCtx, wg.Wait
}

func TestMetricsSaturation(t *testing.T) {
	s, ts := newTestServer(t, func(c *Config) {
		c.MaxNumSeqs = 2
		c.EnableKVCache = true
		c.TimeToFirstToken = Duration(20 * time.Millisecond)
		c.InterTokenLatency = Duration(50 * time.Millisecond)
	})
	cancel, wait := startStreams(t, ts.URL, 6, chatBody(strings.Repeat("a long shared prompt ", 10), 200, true))
	eventually(t, 10*time.Second, "running=2 and waiting=4", func() bool {
		f := scrape(t, ts.URL)
		return value(f, "vllm:num_requests_running", modelLabel()) == 2 && value(f, "vllm:num_requests_waiting", modelLabel()) == 4
	})
	f := scrape(t, ts.URL)
	if u := value(f, "vllm:kv_cache_usage_perc", modelLabel()); u <= 0 {
		t.Errorf("kv_cache_usage_perc = %v while requests run", u)
	}
	cancel()
	wait()
	// Cancellation frees slots, queue places and KV blocks.
	eventually(t, 5*time.Second, "gauges back to zero", func() bool {
		f := scrape(t, ts.URL)
		return value(f, "vllm:num_requests_running", modelLabel()) == 0 && value(f, "vllm:num_requests_waiting", modelLabel()) == 0 &&
			value(f, "vllm:kv_cache_usage_perc", modelLabel()) == 0
	})
	if used, _ := s.kv.Stats(); used != 0 {
		t.Errorf("%d KV blocks still pinned", used)
	}
}

// firstTokenDelay streams one request and returns the time until the first content chunk.
func firstTokenDelay(t *testing.T, url, body string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var first time.Duration
	for sc.Scan() {
		if first == 0 && strings.Contains(sc.Text(), `"content"`) {
			first = time.Since(start)
		}
	}
	if first == 0 {
		t.Fatal("no content chunk")
	}
	return first
}

func TestPrefixCacheHitsLowerTTFT(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) {
		c.EnableKVCache = true
		c.LatencyCalculator = CalculatorPerToken
		c.PrefillTimePerToken = Duration(time.Millisecond)
	})
	prompt := strings.Repeat("shared system prompt words ", 25) // 100 words + "### user: " and ":" tokens
	body := chatBody(prompt, 2, true)
	promptTokens := countTokens("### user: " + prompt + "\n")

	cold := firstTokenDelay(t, ts.URL, body)
	f1 := scrape(t, ts.URL)
	warm := firstTokenDelay(t, ts.URL, body)
	f2 := scrape(t, ts.URL)

	hits1, hits2 := value(f1, "vllm:prefix_cache_hits_total", modelLabel()), value(f2, "vllm:prefix_cache_hits_total", modelLabel())
	queries := value(f2, "vllm:prefix_cache_queries_total", modelLabel())
	cachedWant := float64(promptTokens / 16 * 16)
	if hits1 != 0 || hits2 != cachedWant || queries != float64(2*promptTokens) {
		t.Errorf("hits %v -> %v (want %v), queries %v (want %d)", hits1, hits2, cachedWant, queries, 2*promptTokens)
	}
	// Cold: ~promptTokens ms of prefill; warm: only the uncached tail (<16 ms).
	if cold < time.Duration(promptTokens)*time.Millisecond*8/10 {
		t.Errorf("cold TTFT %v, want about %d ms", cold, promptTokens)
	}
	if warm >= cold/2 {
		t.Errorf("warm TTFT %v not much lower than cold %v", warm, cold)
	}
	// The TTFT histogram observes the simulated values, so its sum shows the drop as well.
	ttft1 := series(f1, "vllm:time_to_first_token_seconds", modelLabel()).Histogram.GetSampleSum()
	ttft2 := series(f2, "vllm:time_to_first_token_seconds", modelLabel()).Histogram.GetSampleSum() - ttft1
	if ttft2 >= ttft1/2 {
		t.Errorf("simulated TTFT cold %v warm %v", ttft1, ttft2)
	}
}
