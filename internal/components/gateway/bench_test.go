package gateway

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmarks measure what the gateway adds: the full chain (real authz and BBR over gRPC,
// the scripted picker, which answers at once and echoes responses) in front of zero-latency
// simulators, against the same simulators hit directly, all on loopback.
//
//	go test -run '^$' -bench . -benchtime 3000x ./internal/components/gateway/
//
// BenchmarkLatencyAt1000RPS paces gateway requests at 1 ms intervals (open loop), samples the
// direct path at 100 req/s alongside, and reports p50/p99 of both and their difference. BenchmarkThroughput runs closed-loop parallel
// clients and reports requests per second for each path.

const benchBody = `{"model":"phi-4-mini","messages":[{"role":"user","content":"Benchmark the gateway, please."}],"max_tokens":4}`

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
}

// benchStack uses the production timeouts: the tests' short picker timeout would turn a busy
// machine's scheduling delays into 502s.
func benchStack(b *testing.B, cfg func(*Config)) *stack {
	return newStack(b, stackOptions{simsPerModel: 1, gateway: func(c *Config) {
		c.PickerTimeout = 10 * time.Second
		if cfg != nil {
			cfg(c)
		}
	}}, "phi-4-mini")
}

// send posts one request and reads the whole answer.
func send(c *http.Client, url string, withKey bool) error {
	req, err := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(benchBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if withKey {
		req.Header.Set("Authorization", "Bearer "+testKey)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// paced sends n gateway requests at the given interval, and with every tenth one a direct
// request as a baseline taken under the same conditions (the machine is shared), each in its own
// goroutine so that a slow answer does not delay the next request. It returns both latency sets,
// sorted.
func paced(b *testing.B, c *http.Client, gateway, direct string, n int, every time.Duration) (gw, base []time.Duration) {
	gw = make([]time.Duration, n)
	base = make([]time.Duration, (n+9)/10)
	var wg sync.WaitGroup
	var failed sync.Once
	run := func(into *time.Duration, url string, withKey bool) {
		defer wg.Done()
		start := time.Now()
		if err := send(c, url, withKey); err != nil {
			failed.Do(func() { b.Errorf("%s: %v", url, err) })
		}
		*into = time.Since(start)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		wg.Add(1)
		go run(&gw[i], gateway, true)
		if i%10 == 0 {
			wg.Add(1)
			go run(&base[i/10], direct, false)
		}
	}
	wg.Wait()
	slices.Sort(gw)
	slices.Sort(base)
	return gw, base
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func BenchmarkLatencyAt1000RPS(b *testing.B) {
	s := benchStack(b, nil)
	c := benchClient()
	direct := s.models["phi-4-mini"].urls[0]
	paced(b, c, s.gw.URL, direct, 300, time.Millisecond) // warm connections and pools
	b.ResetTimer()
	g, d := paced(b, c, s.gw.URL, direct, b.N, time.Millisecond)
	b.StopTimer()
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(pct(d, 0.50)), "direct-p50-µs")
	b.ReportMetric(us(pct(d, 0.99)), "direct-p99-µs")
	b.ReportMetric(us(pct(g, 0.50)), "gateway-p50-µs")
	b.ReportMetric(us(pct(g, 0.99)), "gateway-p99-µs")
	b.ReportMetric(us(pct(g, 0.50)-pct(d, 0.50)), "added-p50-µs")
	b.ReportMetric(us(pct(g, 0.99)-pct(d, 0.99)), "added-p99-µs")
}

func BenchmarkThroughput(b *testing.B) {
	s := benchStack(b, nil)
	// The same chain with responses kept away from the picker (--epp-skip-response).
	lean := benchStack(b, func(c *Config) { c.SkipPickerResponse = true })
	for _, path := range []struct {
		name    string
		url     string
		withKey bool
	}{{"direct", s.models["phi-4-mini"].urls[0], false}, {"gateway", s.gw.URL, true}, {"gateway-skip-response", lean.gw.URL, true}} {
		b.Run(path.name, func(b *testing.B) {
			c := benchClient()
			b.SetParallelism(8)
			start, cpu := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := send(c, path.url, path.withKey); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			// CPU per request counts every component in this process (client, gateway, filters,
			// simulator): on a shared machine it is steadier than wall-clock throughput.
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/req")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
