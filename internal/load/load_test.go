package load_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/load"
)

const model = "phi-4-mini"

func baseConfig(s *stacktest.Stack) load.Config {
	return load.Config{
		URL: s.URL, APIKey: stacktest.Key, Model: model, Stream: true, MaxTokens: 8,
		PodCounter: s.Models[model].Counter(),
	}
}

// TestReportMatchesSimulatorCounters drives the real gateway, picker and simulators and checks
// the report against the simulators' own vllm:request_success_total: the totals match
// exactly, per pod, and the JSON form carries the same numbers.
func TestReportMatchesSimulatorCounters(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Sims: 3}, model)
	cfg := baseConfig(s)
	cfg.Concurrency, cfg.Requests = 4, 60

	rep, err := load.Run(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 60 || rep.Succeeded != 60 || rep.Failed != 0 || rep.StatusCodes["200"] != 60 {
		t.Fatalf("report: %d requests, %d ok, %d failed, codes %v, errors %v", rep.Requests, rep.Succeeded, rep.Failed, rep.StatusCodes, rep.ErrorSamples)
	}
	if rep.PodError != "" {
		t.Fatalf("pod shares: %s", rep.PodError)
	}
	var fromPods float64
	perPod := map[string]float64{}
	for _, p := range rep.Pods {
		fromPods += p.Requests
		perPod[p.Pod] = p.Requests
	}
	counts, err := s.Models[model].Counter().Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var fromSims float64
	for pod, n := range counts {
		fromSims += n
		if perPod[pod] != n {
			t.Errorf("pod %s: report says %g requests, its counter %g", pod, perPod[pod], n)
		}
	}
	if fromSims != 60 || fromPods != 60 {
		t.Errorf("simulators counted %g, report's pods %g; want both 60", fromSims, fromPods)
	}
	if rep.TTFT.Count != 60 || rep.E2E.Count != 60 || rep.ITL.Count != 60*7 {
		t.Errorf("samples: ttft %d e2e %d itl %d; want 60, 60, 420", rep.TTFT.Count, rep.E2E.Count, rep.ITL.Count)
	}
	if !(rep.TTFT.P50 > 0 && rep.TTFT.P50 <= rep.TTFT.P90 && rep.TTFT.P90 <= rep.TTFT.P99 && rep.TTFT.P99 <= rep.E2E.Max) {
		t.Errorf("latencies out of order: ttft %+v e2e %+v", rep.TTFT, rep.E2E)
	}
	if rep.OutputTokensPerSec <= 0 || rep.ThroughputRPS <= 0 {
		t.Errorf("throughput %g req/s, %g tokens/s", rep.ThroughputRPS, rep.OutputTokensPerSec)
	}

	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Requests    int            `json:"requests"`
		StatusCodes map[string]int `json:"statusCodes"`
		Pods        []struct {
			Pod      string  `json:"pod"`
			Requests float64 `json:"requests"`
		} `json:"pods"`
		TTFT struct {
			P90 float64 `json:"p90Ms"`
		} `json:"ttft"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, buf.String())
	}
	if back.Requests != 60 || back.StatusCodes["200"] != 60 || len(back.Pods) != 3 || back.TTFT.P90 != rep.TTFT.P90 {
		t.Errorf("JSON report differs: %s", buf.String())
	}
	buf.Reset()
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", buf.String())
	for _, want := range []string{"TTFT", "ITL", "E2E", "200×60", "phi-4-mini-0-0"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestRefusesNonLoopback: nothing may leave the machine, whatever the flags say.
func TestRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:30080", "https://api.openai.com", "http://example.com", "http://[2001:db8::1]:80", "ftp://127.0.0.1", "127.0.0.1:30080"} {
		cfg := load.Config{URL: u, Model: model, Requests: 1}
		if _, err := load.Run(context.Background(), cfg, nil); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:1", "http://127.8.9.10:1", "http://[::1]:1", "http://localhost:1"} {
		if err := load.CheckTarget(u, nil); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if err := load.CheckTarget("http://172.18.0.2:30080", []string{"172.18.0.2:30080"}); err != nil {
		t.Errorf("allowed host refused: %v", err)
	}
	if _, err := load.Run(context.Background(), load.Config{URL: "http://127.0.0.1:1", Model: model}, nil); err == nil || !strings.Contains(err.Error(), "unbounded") {
		t.Errorf("unbounded run: %v", err)
	}
}
