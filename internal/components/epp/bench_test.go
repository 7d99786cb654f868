package epp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/decision"
	"github.com/inference-sandbox/sandbox/internal/components/epp/plugins"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// benchPool is a 16-endpoint pool with fresh, varied metrics and the production scheduler.
func benchPool(b *testing.B) (*datastore.Store, *scheduling.Scheduler, *metrics) {
	b.Helper()
	store := datastore.NewStore()
	var specs []datastore.Spec
	for i := range 16 {
		specs = append(specs, datastore.Spec{Name: fmt.Sprintf("pod-%d-rank-0", i), PodName: fmt.Sprintf("pod-%d", i),
			Namespace: "models", Address: fmt.Sprintf("10.0.0.%d:5000", i+1)})
	}
	store.Replace(specs)
	for i, e := range store.Endpoints() {
		// Far-future timestamps keep metrics fresh however long the benchmark runs.
		e.SetMetrics(&datastore.Metrics{WaitingQueueSize: i % 4, RunningRequestsSize: i % 5,
			KVCacheUsagePercent: float64(i%10) / 10, UpdateTime: time.Now().Add(time.Hour)})
	}
	m := newMetrics(store, "bench", 2*time.Second, nil)
	sched, err := scheduling.Load([]byte(scheduling.DefaultConfig), plugins.Registry(),
		scheduling.Handle{Store: store, Staleness: 2 * time.Second}, m.observerFor)
	if err != nil {
		b.Fatal(err)
	}
	return store, sched, m
}

// benchPrompts are 8 KB prompts from 32 families sharing 6 KB system prompts, so the prefix
// index sees both hits and misses.
func benchPrompts(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	families := make([]string, 32)
	for i := range families {
		families[i] = strings.Repeat(fmt.Sprintf("system prompt of family %02d; ", i), 6144/28+1)[:6144]
	}
	out := make([][]byte, n)
	for i := range out {
		var sb strings.Builder
		sb.WriteString(families[r.IntN(len(families))])
		for sb.Len() < 8192 {
			fmt.Fprintf(&sb, "%x ", r.Uint64())
		}
		out[i] = []byte(sb.String()[:8192])
	}
	return out
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	pct := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkSchedule16Endpoints8KB is one scheduling decision (filters, the three production
// scorers, the picker and prefix learning) on a 16-endpoint pool with 8 KB prompts.
func BenchmarkSchedule16Endpoints8KB(b *testing.B) {
	store, sched, _ := benchPool(b)
	prompts := benchPrompts(1024)
	eps := store.Endpoints()
	ctx := context.Background()
	for _, p := range prompts { // warm the prefix index
		if _, err := sched.Schedule(ctx, &scheduling.Request{TargetModel: "m", Prompt: p}, eps); err != nil {
			b.Fatal(err)
		}
	}
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, err := sched.Schedule(ctx, &scheduling.Request{TargetModel: "m", Prompt: prompts[i%len(prompts)]}, eps)
		durations = append(durations, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, durations)
}

// BenchmarkRequestPhase is the picker's whole request-phase work for one request with an 8 KB
// chat prompt arriving in two body chunks: header bookkeeping, JSON parse and re-serialisation,
// scheduling, metrics, the decision record and building the replies. Only the gRPC transport
// is left out; BenchmarkRequestPhaseGRPC adds it.
func BenchmarkRequestPhase(b *testing.B) {
	store, sched, m := benchPool(b)
	p := &Processor{store: store, sched: sched, metrics: m, ring: decision.NewRing(1024),
		maxBody: DefaultMaxBodyBytes, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bodies := make([][]byte, 256)
	for i, pr := range benchPrompts(len(bodies)) {
		bodies[i] = chatBody("m", string(pr))
	}
	hdrs := requestHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", ":authority", "gw",
		"content-type", "application/json", "x-request-id", "r", "authorization", "Bearer k")
	ctx := context.Background()
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := bodies[i%len(bodies)]
		start := time.Now()
		x := &exchange{}
		p.handle(ctx, x, hdrs)
		p.handle(ctx, x, requestBody(body[:len(body)/2], false))
		out, final := p.handle(ctx, x, requestBody(body[len(body)/2:], true))
		durations = append(durations, time.Since(start))
		if final || len(out) < 2 {
			b.Fatalf("request phase failed: %v", out)
		}
		p.release(x)
	}
	b.StopTimer()
	reportPercentiles(b, durations)
}

// BenchmarkRequestPhaseGRPC is the same work through a real ext_proc stream on loopback,
// one stream per request as a gateway does it.
func BenchmarkRequestPhaseGRPC(b *testing.B) {
	var specs []datastore.Spec
	for i := range 16 {
		specs = append(specs, datastore.Spec{Address: fmt.Sprintf("127.0.0.%d:9", i+1)})
	}
	srv := startPicker(b, "", specs)
	c := dial(b, srv)
	bodies := make([][]byte, 256)
	for i, pr := range benchPrompts(len(bodies)) {
		bodies[i] = chatBody("m", string(pr))
	}
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, stream, err := sendRequest(context.Background(), c, "/v1/chat/completions", bodies[i%len(bodies)], 4096)
		durations = append(durations, time.Since(start))
		if err != nil || res.dest == "" {
			b.Fatal(err)
		}
		_ = stream.CloseSend()
		_, _ = stream.Recv() // wait for the server to see the close
	}
	b.StopTimer()
	reportPercentiles(b, durations)
}
