package load_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// arrivals wraps a real simulator and notes when each request reached it.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func startRecordedSim(t *testing.T, adjust func(*sim.Config)) (string, *arrivals, *podmetrics.Counter) {
	t.Helper()
	p := stacktest.StartSim(t, model, "sim-0", 1, adjust)
	a := &arrivals{}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			a.mu.Lock()
			a.times = append(a.times, time.Now())
			a.mu.Unlock()
		}
		// Forward to the simulator's handler in-process: the same server code, minus a hop.
		p.Sim.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	c := &podmetrics.Counter{
		Scraper: &podmetrics.Scraper{Fetch: podmetrics.HTTPFetch(http.DefaultClient, func(podmetrics.Target) string { return p.URL })},
		Targets: func(context.Context) ([]podmetrics.Target, error) { return []podmetrics.Target{{Pod: p.Name}}, nil },
	}
	return proxy.URL, a, c
}

// TestOpenLoopRate: arrivals at the server follow the Poisson schedule — the count and the
// mean gap match the rate, the gaps are exponential (coefficient of variation ≈ 1), and the
// simulator counted exactly what the report says.
func TestOpenLoopRate(t *testing.T) {
	url, arr, counter := startRecordedSim(t, nil)
	const rate, dur = 200.0, 3 * time.Second
	rep, err := load.Run(t.Context(), load.Config{
		URL: url, Model: model, Rate: rate, Duration: dur, MaxTokens: 2, Stream: true, PodCounter: counter,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := rate * dur.Seconds()
	if math.Abs(float64(rep.Sent)-want) > 4*math.Sqrt(want) {
		t.Errorf("sent %d in %s at %g req/s; want %g ± %.0f", rep.Sent, dur, rate, want, 4*math.Sqrt(want))
	}
	if rep.Succeeded != rep.Sent || len(arr.times) != rep.Sent || rep.Pods[0].Requests != float64(rep.Sent) {
		t.Errorf("sent %d, ok %d, arrived %d, simulator counted %g", rep.Sent, rep.Succeeded, len(arr.times), rep.Pods[0].Requests)
	}
	var gaps []float64
	for i := 1; i < len(arr.times); i++ {
		gaps = append(gaps, arr.times[i].Sub(arr.times[i-1]).Seconds())
	}
	mean, sd := meanSD(gaps)
	if math.Abs(mean-1/rate)/(1/rate) > 0.15 {
		t.Errorf("mean gap between arrivals %.2fms, want %.2fms", mean*1e3, 1e3/rate)
	}
	// Exponential gaps have a coefficient of variation of 1, evenly paced ones ≈ 0; scheduler
	// stalls on a loaded machine (a late send followed by a burst) push it up, so the upper
	// bound is loose and the schedule's accuracy is checked through the client's lag instead.
	if cv := sd / mean; cv < 0.75 || cv > 2 {
		t.Errorf("gaps' coefficient of variation %.2f; Poisson arrivals give 1", cv)
	}
	if rep.SendLag.Count != rep.Sent || rep.SendLag.P50 > 20 {
		t.Errorf("requests left the client %.1fms (p50) after their scheduled time (%d samples)", rep.SendLag.P50, rep.SendLag.Count)
	}
	t.Logf("gap CV %.2f, client lag p50 %.2fms p99 %.2fms", sd/mean, rep.SendLag.P50, rep.SendLag.P99)
	span := arr.times[len(arr.times)-1].Sub(arr.times[0])
	if span < dur*9/10 || span > dur+200*time.Millisecond {
		t.Errorf("arrivals spread over %s, want about %s", span, dur)
	}
}

func meanSD(xs []float64) (float64, float64) {
	var s, s2 float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	for _, x := range xs {
		s2 += (x - m) * (x - m)
	}
	return m, math.Sqrt(s2 / float64(len(xs)-1))
}

// TestClosedLoopConcurrency: N clients keep exactly N requests in flight, as the simulator's
// own running gauge shows.
func TestClosedLoopConcurrency(t *testing.T) {
	p := stacktest.StartSim(t, model, "sim-0", 1, func(c *sim.Config) {
		c.TimeToFirstToken = sim.Duration(20 * time.Millisecond)
		c.InterTokenLatency = sim.Duration(5 * time.Millisecond)
	})
	scraper := &podmetrics.Scraper{Fetch: podmetrics.HTTPFetch(http.DefaultClient, func(podmetrics.Target) string { return p.URL })}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	peak := make(chan float64, 1)
	go func() {
		var top float64
		for ctx.Err() == nil {
			r := scraper.Scrape(ctx, []podmetrics.Target{{Pod: p.Name}})[0]
			if r.Err == nil {
				top = max(top, podmetrics.Sum(r.Families, "vllm:num_requests_running"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		peak <- top
	}()
	const clients = 5
	rep, err := load.Run(t.Context(), load.Config{
		URL: p.URL, Model: model, Concurrency: clients, Duration: 1500 * time.Millisecond, MaxTokens: 8, Stream: true,
	}, nil)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if top := <-peak; top != clients {
		t.Errorf("simulator ran at most %g requests at once; want %d", top, clients)
	}
	// Each request takes about 20 ms + 7 × 5 ms, so 5 clients manage about 90 req/s.
	perRequest := rep.E2E.Mean / 1000
	if expect := clients / perRequest; math.Abs(rep.ThroughputRPS-expect)/expect > 0.2 {
		t.Errorf("throughput %.1f req/s; %d clients at %.1fms each should give %.1f", rep.ThroughputRPS, clients, rep.E2E.Mean, expect)
	}
	if rep.Failed != 0 || rep.Succeeded < 50 {
		t.Errorf("%d ok, %d failed: %v", rep.Succeeded, rep.Failed, rep.ErrorSamples)
	}
}

// TestTTFTFromScheduledTime: when the client cannot send on schedule (one request in flight at
// a time, arrivals every 5 ms, a server that takes 40 ms), the wait counts in TTFT, as it
// would for a user; a closed loop on the same server sees only the server's 40 ms.
func TestTTFTFromScheduledTime(t *testing.T) {
	p := stacktest.StartSim(t, model, "sim-0", 1, func(c *sim.Config) {
		c.TimeToFirstToken = sim.Duration(40 * time.Millisecond)
	})
	open, err := load.Run(t.Context(), load.Config{
		URL: p.URL, Model: model, Rate: 200, Requests: 20, MaxInFlight: 1, MaxTokens: 2, Stream: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed, err := load.Run(t.Context(), load.Config{
		URL: p.URL, Model: model, Concurrency: 1, Requests: 20, MaxTokens: 2, Stream: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if closed.TTFT.P50 < 40 || closed.TTFT.P90 > 80 {
		t.Errorf("closed loop TTFT p50 %.1fms p90 %.1fms; want about 40ms", closed.TTFT.P50, closed.TTFT.P90)
	}
	// The 20th request was due at about 100 ms and sent after 19 × 40 ms.
	if open.TTFT.Max < 500 || open.TTFT.P50 < 3*closed.TTFT.P50 {
		t.Errorf("open loop TTFT p50 %.1fms max %.1fms: the client-side wait is not counted", open.TTFT.P50, open.TTFT.Max)
	}
	if open.SendLag.Max < 400 || closed.SendLag.P99 > 5 {
		t.Errorf("client lag: open loop max %.1fms (want the queueing to show), closed loop p99 %.1fms (want ~0)", open.SendLag.Max, closed.SendLag.P99)
	}
	if open.TTFT.Count != 20 || open.Succeeded != 20 {
		t.Errorf("open loop: %d TTFT samples, %d ok", open.TTFT.Count, open.Succeeded)
	}
}

// TestBoundedStop: a run ends at its duration plus at most one request timeout even when the
// server never answers, and a cancelled run returns at once with what it has.
func TestBoundedStop(t *testing.T) {
	p := stacktest.StartSim(t, model, "sim-0", 1, func(c *sim.Config) {
		c.TimeToFirstToken = sim.Duration(10 * time.Second)
	})
	start := time.Now()
	rep, err := load.Run(t.Context(), load.Config{
		URL: p.URL, Model: model, Rate: 20, Duration: 500 * time.Millisecond, RequestTimeout: 300 * time.Millisecond, Stream: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("run took %s; bound is 500ms + 300ms timeout", took)
	}
	if rep.Succeeded != 0 || rep.Failed != rep.Sent || rep.StatusCodes["timeout"] != rep.Sent || rep.Sent == 0 {
		t.Errorf("sent %d, ok %d, failed %d, codes %v", rep.Sent, rep.Succeeded, rep.Failed, rep.StatusCodes)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	var progress []load.Progress
	rep, err = load.Run(ctx, load.Config{URL: p.URL, Model: model, Concurrency: 3, Duration: time.Hour, Stream: true},
		func(p load.Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled run took %s to return", took)
	}
	if !rep.Interrupted || rep.Requests != 0 || rep.Sent != 3 {
		t.Errorf("cancelled run: interrupted %v, sent %d, ended %d", rep.Interrupted, rep.Sent, rep.Requests)
	}
	if len(progress) == 0 || progress[len(progress)-1].Sent != 3 {
		t.Errorf("progress: %+v", progress)
	}
}

// A target that fails every request at once (here the simulator's own 503 while it shuts down)
// must not be hammered: closed-loop clients back off after failures, so a second of 4 clients
// sends tens of requests, not the thousands a tight loop would.
func TestClosedLoopBacksOffOnErrors(t *testing.T) {
	p := stacktest.StartSim(t, model, "sim-0", 1, nil)
	p.Sim.StartShutdown()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		p.Sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rep, err := load.Run(t.Context(), load.Config{
		URL: srv.URL, Model: model, Concurrency: 4, Duration: time.Second, MaxTokens: 2, Stream: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed == 0 || rep.Succeeded > 0 {
		t.Fatalf("want only failures, got %d failed, %d succeeded", rep.Failed, rep.Succeeded)
	}
	// 10+20+40+…+640 ms: at most 8 tries per client in the second, plus the one in flight.
	if n := hits.Load(); n > 4*9 {
		t.Fatalf("%d requests in one second from 4 failing clients: no back-off", n)
	}
	t.Logf("%d requests from 4 failing clients in 1 s", hits.Load())
}
