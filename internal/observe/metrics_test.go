package observe

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/decision"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
)

// TestSampleFromARealSimulator reads the simulator's own page after it served requests.
func TestSampleFromARealSimulator(t *testing.T) {
	stack := stacktest.Start(t, stacktest.Options{Sims: 1}, "phi-4-mini")
	pod := stack.Models["phi-4-mini"].Pods[0]
	chat(t, stack.URL, "phi-4-mini", 5)
	resp, err := http.Get(pod.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s, err := ParseSample(page, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Success != 5 {
		t.Errorf("success %v, want 5", s.Success)
	}
	if s.TTFT[math.Inf(1)] != 5 {
		t.Errorf("TTFT histogram counts %v requests, want 5", s.TTFT[math.Inf(1)])
	}
	if _, err := ParseSample([]byte("# just a comment\nup 1\n"), time.Now()); err == nil {
		t.Error("a page without vLLM metrics parsed")
	}
}

func TestQuantileInterpolatesInsideTheBucket(t *testing.T) {
	b := map[float64]float64{0.1: 10, 0.2: 30, 0.5: 40, math.Inf(1): 40}
	for _, c := range []struct{ q, want float64 }{{0.25, 0.1}, {0.5, 0.15}, {0.75, 0.2}, {0.875, 0.35}} {
		got, ok := quantile(c.q, b)
		if !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	if _, ok := quantile(0.5, map[float64]float64{0.1: 0, math.Inf(1): 0}); ok {
		t.Error("an empty histogram has a quantile")
	}
}

func TestHistoryRatesSurviveRestarts(t *testing.T) {
	h := &history{window: time.Minute}
	t0 := time.Unix(1000, 0)
	for i, c := range []float64{0, 10, 20, 30} {
		h.add(Sample{Time: t0.Add(time.Duration(i) * 2 * time.Second), Success: c, PrefixHits: c, PrefixQueries: 2 * c})
	}
	if r := h.rate(10 * time.Second); r != 5 {
		t.Errorf("rate %v, want 5/s", r)
	}
	if r, ok := h.prefixHitRate(); !ok || r != 0.5 {
		t.Errorf("prefix hit rate %v %v, want 0.5", r, ok)
	}
	// The pod restarted: its counter went back to 2. No negative rate.
	h.add(Sample{Time: t0.Add(8 * time.Second), Success: 2})
	if r := h.rate(10 * time.Second); r != 0 {
		t.Errorf("rate after a restart %v, want 0", r)
	}
	// Samples older than the window are dropped, but one baseline stays.
	h.add(Sample{Time: t0.Add(5 * time.Minute), Success: 3})
	if len(h.samples) != 2 {
		t.Errorf("history keeps %d samples after a long gap, want 2", len(h.samples))
	}
}

// TestFollowReconnectsWithoutDuplicates serves the picker's real decision ring, drops the
// connection, and checks that the follower comes back, skips what it saw and reports state.
func TestFollowReconnectsWithoutDuplicates(t *testing.T) {
	ring := decision.NewRing(64)
	ts := httptest.NewServer(http.StripPrefix("", ring.Handler()))
	t.Cleanup(ts.Close)
	var opens atomic.Int32
	open := func(ctx context.Context, namespace, model string, backlog int) (io.ReadCloser, error) {
		opens.Add(1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/decisions?follow=1&limit=10", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	add := func(pod string) {
		ring.Add(&decision.Record{Time: time.Now(), Model: "m", Status: "success", Endpoint: "10.0.0.1:5000", Name: pod})
		time.Sleep(2 * time.Millisecond) // distinct times: reconnection dedups by time
	}
	add("a")
	add("b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Decision, 100)
	states := make(chan error, 100)
	go follow(ctx, open, "ns", "m", func(d Decision) { got <- d }, func(err error) { states <- err })
	want := func(pods ...string) {
		t.Helper()
		for _, p := range pods {
			select {
			case d := <-got:
				if d.Pod != p || d.Model != "m" {
					t.Fatalf("decision for %s/%s, want m/%s", d.Model, d.Pod, p)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no decision for %s", p)
			}
		}
	}
	want("a", "b")
	if err := <-states; err != nil {
		t.Fatalf("first state %v, want connected", err)
	}
	ts.CloseClientConnections()
	select {
	case err := <-states:
		if err == nil {
			t.Fatal("a dropped stream reported as connected")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped stream was not reported")
	}
	add("c")
	want("c") // after the reconnect's backlog (a, b, c), only c is new
	select {
	case d := <-got:
		t.Fatalf("duplicate or extra decision %+v", d)
	case <-time.After(300 * time.Millisecond):
	}
	if opens.Load() < 2 {
		t.Fatalf("opened %d times, want a reconnection", opens.Load())
	}
	if !strings.Contains(ts.URL, "127.0.0.1") {
		t.Fatal("test server is not on loopback")
	}
}
