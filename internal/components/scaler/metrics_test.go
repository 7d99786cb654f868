package scaler

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestSumFamily(t *testing.T) {
	page := `# HELP vllm:num_requests_waiting Waiting requests.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 3
vllm:num_requests_waiting{model_name="b"} 4.5
# TYPE vllm:request_success_total counter
vllm:request_success_total{model_name="a",finished_reason="stop"} 7
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="+Inf"} 1
vllm:e2e_request_latency_seconds_sum 0.5
vllm:e2e_request_latency_seconds_count 1
`
	for metric, want := range map[string]float64{
		"vllm:num_requests_waiting": 7.5, "vllm:request_success_total": 7, "vllm:num_requests_running": 0,
	} {
		got, err := SumFamily(strings.NewReader(page), metric)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", metric, got, err, want)
		}
	}
	if _, err := SumFamily(strings.NewReader(page), "vllm:e2e_request_latency_seconds"); err == nil {
		t.Error("summed a histogram")
	}
	if _, err := SumFamily(strings.NewReader("not { a metrics page"), "x"); err == nil {
		t.Error("parsed garbage")
	}
}

func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/metrics"
}

// TestScraperSumsRealSimulators queues requests on two in-process simulators and checks the
// sum, then that an unreachable pod counts as zero and that all unreachable is an error.
func TestScraperSumsRealSimulators(t *testing.T) {
	a, b := startSim(t), startSim(t)
	queue(t, a, 4) // 1 running, 3 waiting
	queue(t, b, 3) // 1 running, 2 waiting
	s := NewScraper()
	eps := []Endpoint{{Pod: "a", URL: a + "/metrics"}, {Pod: "b", URL: b + "/metrics"}}
	ctx := context.Background()
	eventually(t, 10*time.Second, "5 waiting requests", func() (bool, string) {
		sum, _, err := s.Sum(ctx, eps, DefaultMetricName)
		return err == nil && sum == 5, fmt.Sprintf("%v %v", sum, err)
	})
	running, _, err := s.Sum(ctx, eps, "vllm:num_requests_running")
	if err != nil || running != 2 {
		t.Fatalf("running = %v, %v; want 2", running, err)
	}

	s.Timeout = 500 * time.Millisecond
	down := Endpoint{Pod: "down", URL: closedURL(t)}
	sum, per, err := s.Sum(ctx, append(eps, down), DefaultMetricName)
	if err != nil || sum != 5 || per[2].Err == nil {
		t.Fatalf("with one pod down: sum %v, err %v, per-pod %+v", sum, err, per)
	}
	if _, _, err := s.Sum(ctx, []Endpoint{down}, DefaultMetricName); err == nil || !strings.Contains(err.Error(), "pod down") {
		t.Fatalf("all pods down: err = %v", err)
	}
	if _, _, err := s.Sum(ctx, nil, DefaultMetricName); err != errNoEndpoints {
		t.Fatalf("no pods: err = %v", err)
	}
}
