package load_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/load/target"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// prefixHits sums the simulators' prefix-cache counters.
func prefixHits(t *testing.T, m *stacktest.Model) (hits, queries float64) { return prefixHitsB(t, m) }

func prefixHitsB(t testing.TB, m *stacktest.Model) (hits, queries float64) {
	t.Helper()
	s := &podmetrics.Scraper{Fetch: m.Fetch()}
	for _, r := range s.Scrape(t.Context(), m.Targets()) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		hits += podmetrics.Sum(r.Families, "vllm:prefix_cache_hits_total")
		queries += podmetrics.Sum(r.Families, "vllm:prefix_cache_queries_total")
	}
	return hits, queries
}

// TestWorkloadsThroughThePicker sends each workload through the gateway and the real
// prefix-aware picker to simulators with a KV cache: shared prefixes and multi-turn histories
// hit the cache, random prompts do not — the workloads exercise what they claim to.
func TestWorkloadsThroughThePicker(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Sims: 3, SimConfig: func(c *sim.Config) {
		c.EnableKVCache, c.KVCacheSize, c.BlockSize = true, 4096, 16
	}}, model)
	m := s.Models[model]
	for _, tc := range []struct {
		kind     string
		min, max float64
	}{{load.KindSharedPrefix, 0.7, 1}, {load.KindMultiTurn, 0.5, 1}, {load.KindRandom, 0, 0.15}} {
		t.Run(tc.kind, func(t *testing.T) {
			w := load.DefaultWorkload()
			w.Kind, w.Families, w.PrefixChars = tc.kind, 4, 1500
			cfg := baseConfig(s)
			cfg.Workload, cfg.Concurrency, cfg.Requests, cfg.MaxTokens = w, 2, 80, 4
			h0, q0 := prefixHits(t, m)
			rep, err := load.Run(t.Context(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Succeeded != 80 {
				t.Fatalf("%d ok of 80: %v", rep.Succeeded, rep.ErrorSamples)
			}
			h1, q1 := prefixHits(t, m)
			ratio := (h1 - h0) / (q1 - q0)
			t.Logf("%s: prefix-cache hit ratio %.2f", tc.kind, ratio)
			if ratio < tc.min || ratio > tc.max {
				t.Errorf("%s: hit ratio %.2f, want %.2f..%.2f", tc.kind, ratio, tc.min, tc.max)
			}
		})
	}
}

// TestChatNamesThePod streams one answer through the stack; the picker's decision record for
// the request id names the same pod as the simulator's own header.
func TestChatNamesThePod(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Sims: 3}, model)
	var streamed strings.Builder
	id := uuid.NewString()
	res, err := load.Chat(t.Context(), load.ChatRequest{
		URL: s.URL, APIKey: stacktest.Key, Model: model, Prompt: "What is a KV cache?", MaxTokens: 12, RequestID: id,
	}, func(s string) { streamed.WriteString(s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Content == "" || res.Content != streamed.String() || res.Tokens < 1 || res.Tokens > 12 || res.TTFT <= 0 || res.TTFT > res.Total {
		t.Errorf("result %+v, streamed %q", res, streamed.String())
	}
	if res.RequestID != id {
		t.Errorf("request id %q, sent %q", res.RequestID, id)
	}
	resp, err := http.Get("http://" + s.Models[model].Picker.MetricsAddr() + "/decisions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d, ok, err := target.FindDecision(resp.Body, id)
	if err != nil || !ok {
		t.Fatalf("no decision for %s: %v", id, err)
	}
	if d.EndpointName == "" || d.EndpointName != res.Pod {
		t.Errorf("picker chose %q (%s), the answer came from %q", d.EndpointName, d.Endpoint, res.Pod)
	}

	_, err = load.Chat(context.Background(), load.ChatRequest{URL: s.URL, APIKey: "sk-wrong", Model: model, Prompt: "hi"}, nil)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := load.Chat(context.Background(), load.ChatRequest{URL: "http://192.0.2.1", Model: model, Prompt: "hi"}, nil); err == nil {
		t.Error("chat to a non-loopback address was allowed")
	}
}
