package sim

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testLatency(mutate func(*Config)) *latencyModel {
	cfg := DefaultConfig()
	cfg.Model = testModel
	mutate(&cfg)
	return newLatencyModel(cfg, newLockedRand(7))
}

func TestLoadFactor(t *testing.T) {
	l := testLatency(func(c *Config) { c.MaxNumSeqs, c.TimeFactorUnderLoad = 5, 3 })
	for running, want := range map[int]float64{0: 1, 1: 1, 3: 2, 5: 3} {
		if got := l.loadFactor(running); got != want {
			t.Errorf("loadFactor(%d) = %v, want %v", running, got, want)
		}
	}
	if got := testLatency(func(c *Config) { c.MaxNumSeqs, c.TimeFactorUnderLoad = 1, 3 }).loadFactor(1); got != 1 {
		t.Errorf("max-num-seqs 1: factor %v", got)
	}
}

func TestTimeToFirstTokenFormulas(t *testing.T) {
	perToken := testLatency(func(c *Config) {
		c.LatencyCalculator = CalculatorPerToken
		c.PrefillOverhead = Duration(20 * time.Millisecond)
		c.PrefillTimePerToken = Duration(500 * time.Microsecond)
		c.MaxNumSeqs, c.TimeFactorUnderLoad = 3, 2
		c.KVCacheTransferTimePerToken = Duration(100 * time.Microsecond)
		// Constant knobs are ignored by the per-token calculator.
		c.TimeToFirstToken = Duration(time.Second)
	})
	cases := []struct {
		running, prompt, cached int
		remote                  bool
		want                    time.Duration
	}{
		{1, 100, 0, false, 70 * time.Millisecond},  // 20 + 100×0.5
		{1, 100, 64, false, 38 * time.Millisecond}, // cached tokens cost nothing
		{3, 100, 0, false, 140 * time.Millisecond}, // factor 2 at max-num-seqs
		{1, 101, 0, false, 70 * time.Millisecond},  // 70.5 ms truncated to whole ms
		{3, 100, 0, true, 10 * time.Millisecond},   // P/D decode: 100×0.1 ms, no load factor
		{1, 3, 0, true, 0},                         // 0.3 ms collapses to 0 like upstream
	}
	for _, c := range cases {
		if got := perToken.timeToFirstToken(c.running, c.prompt, c.cached, c.remote); got != c.want {
			t.Errorf("per-token %+v: got %v", c, got)
		}
	}
	constant := testLatency(func(c *Config) {
		c.TimeToFirstToken = Duration(100 * time.Millisecond)
		c.KVCacheTransferLatency = Duration(5 * time.Millisecond)
		c.MaxNumSeqs, c.TimeFactorUnderLoad = 3, 2
	})
	if got := constant.timeToFirstToken(2, 500, 0, false); got != 150*time.Millisecond {
		t.Errorf("legacy constant with factor 1.5: %v", got)
	}
	if got := constant.timeToFirstToken(2, 500, 480, false); got != 150*time.Millisecond {
		t.Errorf("constant TTFT must ignore the cache: %v", got)
	}
	if got := constant.timeToFirstToken(3, 500, 0, true); got != 5*time.Millisecond {
		t.Errorf("constant KV transfer: %v", got)
	}
}

func TestJitterStaysWithinBounds(t *testing.T) {
	l := testLatency(func(c *Config) {
		c.InterTokenLatency, c.InterTokenLatencyStdDev = Duration(10*time.Millisecond), Duration(3*time.Millisecond)
	})
	var sum time.Duration
	const n = 2000
	seen := map[time.Duration]bool{}
	for i := 0; i < n; i++ {
		d := l.interTokenLatency(1)
		if d < 3*time.Millisecond || d > 17*time.Millisecond || d%time.Millisecond != 0 {
			t.Fatalf("jittered ITL %v outside [3ms,17ms] or not whole ms", d)
		}
		seen[d] = true
		sum += d
	}
	if mean := sum / n; mean < 9*time.Millisecond || mean > 11*time.Millisecond {
		t.Errorf("mean ITL %v, want about 10ms", mean)
	}
	if len(seen) < 5 {
		t.Errorf("only %d distinct values: no jitter", len(seen))
	}
}

// TestMeasuredStreamTiming checks wall-clock TTFT and inter-token gaps of a real stream
// against the configured constant profile. Bounds are wide because the machine is shared.
func TestMeasuredStreamTiming(t *testing.T) {
	const ttft, itl, tokens = 60 * time.Millisecond, 15 * time.Millisecond, 12
	_, ts := newTestServer(t, func(c *Config) {
		c.LatencyCalculator = CalculatorConstant
		c.TimeToFirstToken = Duration(ttft)
		c.InterTokenLatency = Duration(itl)
	})
	body := `{"model":"test-model","messages":[{"role":"user","content":"time me"}],"max_tokens":12,"ignore_eos":true,"stream":true}`
	start := time.Now()
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var arrivals []time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"content"`) {
			arrivals = append(arrivals, time.Since(start))
		}
	}
	if len(arrivals) != tokens {
		t.Fatalf("got %d tokens, want %d", len(arrivals), tokens)
	}
	if arrivals[0] < ttft || arrivals[0] > ttft+100*time.Millisecond {
		t.Errorf("measured TTFT %v, configured %v", arrivals[0], ttft)
	}
	decode := arrivals[tokens-1] - arrivals[0]
	mean := decode / (tokens - 1)
	if mean < itl*9/10 || mean > itl*3 {
		t.Errorf("mean inter-token gap %v, configured %v", mean, itl)
	}
}

func TestLatencyProfiles(t *testing.T) {
	for model, want := range map[string]string{
		"ministral-3b": "small-l40s", "phi-4-mini": "8b-h100", "llama-3.1-8b-instruct": "8b-h100",
		"qwen2.5-32B": "70b-tp8", "llama-3.3-70b": "70b-tp8", "mixtral-8x7b": "8b-h100", "tiny-0.5b": "small-l40s",
	} {
		if got := autoProfile(model); got != want {
			t.Errorf("autoProfile(%q) = %s, want %s", model, got, want)
		}
	}
	cfg := DefaultConfig()
	cfg.Model = "ministral-3b"
	cfg.LatencyProfile = ProfileAuto
	cfg.InterTokenLatency = Duration(20 * time.Millisecond)
	cfg.applyLatencyProfile(map[string]bool{"inter-token-latency": true})
	if cfg.LatencyCalculator != CalculatorPerToken || cfg.PrefillOverhead.D() != 20*time.Millisecond ||
		cfg.PrefillTimePerToken.D() != 350*time.Microsecond || cfg.TimeFactorUnderLoad != 1.5 {
		t.Errorf("small-l40s per-token knobs not applied: %+v", cfg)
	}
	if cfg.InterTokenLatency.D() != 20*time.Millisecond || cfg.InterTokenLatencyStdDev.D() != 2*time.Millisecond {
		t.Errorf("explicit inter-token-latency must win over the profile: %v / %v", cfg.InterTokenLatency, cfg.InterTokenLatencyStdDev)
	}
	if cfg.TimeToFirstToken != 0 {
		t.Error("per-token profile must leave constant knobs alone")
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("profile values must validate: %v", err)
	}
	for _, name := range []string{"small-l40s", "8b-h100", "70b-tp8"} {
		for _, calc := range []string{CalculatorConstant, CalculatorPerToken} {
			c := DefaultConfig()
			c.Model, c.LatencyProfile, c.LatencyCalculator = "m", name, calc
			c.applyLatencyProfile(nil)
			if err := c.Validate(); err != nil {
				t.Errorf("%s/%s: %v", name, calc, err)
			}
		}
	}
}

// TestCancellationFreesSlotAndBlocks cancels a running and a waiting request and checks
// that the slot, the queue place and the KV blocks are released at once, not when the
// simulated generation would have ended.
func TestCancellationFreesSlotAndBlocks(t *testing.T) {
	s, ts := newTestServer(t, func(c *Config) {
		c.MaxNumSeqs = 1
		c.EnableKVCache = true
		c.TimeToFirstToken = Duration(time.Millisecond)
		c.InterTokenLatency = Duration(time.Second)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := chatBody(strings.Repeat("pin these blocks ", 20), 100, true)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read until the first token: the request is now running and holds its blocks.
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), `"content"`) {
	}
	waitCtx, waitCancel := context.WithCancel(context.Background())
	defer waitCancel()
	waitDone := make(chan struct{})
	go func() {
		defer close(waitDone)
		r, _ := http.NewRequestWithContext(waitCtx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
		if resp, err := http.DefaultClient.Do(r); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, 5*time.Second, "one waiting request", func() bool {
		return value(scrape(t, ts.URL), "vllm:num_requests_waiting", modelLabel()) == 1
	})
	if used, _ := s.kv.Stats(); used == 0 || s.sched.load() != 1 {
		t.Fatalf("running request holds %d blocks, %d running", used, s.sched.load())
	}
	waitCancel()
	<-waitDone
	eventually(t, time.Second, "waiting request removed", func() bool {
		return value(scrape(t, ts.URL), "vllm:num_requests_waiting", modelLabel()) == 0
	})
	cancelledAt := time.Now()
	cancel()
	eventually(t, time.Second, "slot and blocks released", func() bool {
		used, _ := s.kv.Stats()
		return used == 0 && s.sched.load() == 0
	})
	if d := time.Since(cancelledAt); d > 500*time.Millisecond {
		t.Errorf("release took %v, the next token was due in up to 1s", d)
	}
	f := scrape(t, ts.URL)
	if value(f, "vllm:num_requests_running", modelLabel()) != 0 || value(f, "vllm:kv_cache_usage_perc", modelLabel()) != 0 {
		t.Error("gauges not reset after cancellation")
	}
}
