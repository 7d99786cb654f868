package scaler

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/sim"
)

// startSim runs a real simulator in process that admits one request at a time and holds
// each for a long first token, so every further request queues: its
// vllm:num_requests_waiting is exactly what a test put there.
func startSim(t *testing.T) string {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Model = "test-model"
	cfg.Seed = 1
	cfg.MaxNumSeqs = 1
	cfg.TimeToFirstToken = sim.Duration(time.Minute)
	s, err := sim.New(cfg, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL
}

// queue sends n requests that stay in flight until the test ends; one runs, n-1 wait.
func queue(t *testing.T, baseURL string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"model":"test-model","prompt":"request %d","max_tokens":2}`, i)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last: %s)", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
