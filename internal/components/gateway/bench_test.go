package gateway

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
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

// BenchmarkLatencyAt1000RPS measures the latency the chain adds at 1,000 req/s. The gateway,
// authz, BBR and picker pods run with GOGC=400, so the benchmark process does too (it holds them
// all, and the simulators and client with them; with the default GOGC=100 the added p99 is about
// 2 ms higher, 2026-11-25).
//
//	go test -run '^$' -bench LatencyAt1000RPS -benchtime 10000x ./internal/components/gateway/
func BenchmarkLatencyAt1000RPS(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
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

// ioSyscalls is the number of read- and write-type system calls the process made so far
// (/proc/self/io syscr + syscw); 0 where that file does not exist.
func ioSyscalls() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseInt(v, 10, 64)
			n += x
		}
	}
	return n
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPickerOverhead measures what the endpoint picker costs on top of routing alone
// (issue: the picker adds at most 1 ms p50 and 5 ms p99 at 1,000 req/s): the same gateway sends
// the same request either through an InferencePool served by the offline EPP (default scorers,
// scraping the simulator) or, with a header that selects a more specific rule, straight to the
// simulator as a Service backendRef. Blocks of 500 requests paced at 1 ms alternate between the
// two routes so that both see the same machine.
//
//	go test -run '^$' -bench PickerOverhead -benchtime 4x ./internal/components/gateway/
func BenchmarkPickerOverhead(b *testing.B) {
	s := benchStack(b, nil)
	m := s.models["phi-4-mini"]
	pickerAddr := freeAddr(b)
	runPicker(b, m, pickerAddr)
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = pickerAddr })

	s.addServiceRoute("phi-4-mini-fixed", m.addrs[0], gatewayv1.HTTPHeaderMatch{Name: modelHeader, Value: "phi-4-mini"},
		gatewayv1.HTTPHeaderMatch{Name: "X-Bench-Route", Value: "fixed"})

	c := benchClient()
	block := func(fixed bool, n int) []time.Duration {
		out := make([]time.Duration, n)
		var wg sync.WaitGroup
		var failed sync.Once
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if err := sendTo(c, s.gw.URL, fixed); err != nil {
					failed.Do(func() { b.Errorf("fixed=%v: %v", fixed, err) })
				}
				out[i] = time.Since(start)
			}()
		}
		wg.Wait()
		return out
	}
	block(false, 300) // warm the picker's connection and index
	block(true, 300)
	b.ResetTimer()
	var pool, fixed []time.Duration
	for range b.N {
		pool = append(pool, block(false, 500)...)
		fixed = append(fixed, block(true, 500)...)
	}
	b.StopTimer()
	slices.Sort(pool)
	slices.Sort(fixed)
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(pct(fixed, 0.50)), "service-p50-µs")
	b.ReportMetric(us(pct(fixed, 0.99)), "service-p99-µs")
	b.ReportMetric(us(pct(pool, 0.50)), "pool-p50-µs")
	b.ReportMetric(us(pct(pool, 0.99)), "pool-p99-µs")
	b.ReportMetric(us(pct(pool, 0.50)-pct(fixed, 0.50)), "picker-p50-µs")
	b.ReportMetric(us(pct(pool, 0.99)-pct(fixed, 0.99)), "picker-p99-µs")
}

// sendTo posts the benchmark request through the gateway, to the fixed Service route when fixed.
func sendTo(c *http.Client, url string, fixed bool) error {
	req, err := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(benchBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testKey)
	if fixed {
		req.Header.Set("X-Bench-Route", "fixed")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return nil
}

// addServiceRoute routes requests with the given headers (any path) to addr as a Service
// backendRef; without headers it catches what no other route takes.
func (s *stack) addServiceRoute(name, addr string, headers ...gatewayv1.HTTPHeaderMatch) {
	svc := types.NamespacedName{Namespace: testNamespace, Name: name}
	s.in.Services[svc] = routing.Service{Namespace: svc.Namespace, Name: svc.Name, Ports: map[int32][]string{8000: {addr}}}
	r := gatewayv1.HTTPRoute{}
	r.Namespace, r.Name = testNamespace, name
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(testGateway.Name)}}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{
		Matches: []gatewayv1.HTTPRouteMatch{{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")},
			Headers: headers,
		}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(svc.Name), Port: ptr.To[gatewayv1.PortNumber](8000),
		}}}},
	}}
	s.in.Routes = append(s.in.Routes, r)
	s.table.Update(s.in)
}

// BenchmarkThroughputWrk is BenchmarkThroughput with the load generated out of process by wrk
// (C, one thread, 16 keep-alive connections), so that the client's cost does not land in the
// measured process and is the same small amount for every path. The chain is built up one
// piece at a time, each step a separate gateway in front of the same kind of simulator:
//
//	direct          the simulator alone
//	proxy           gateway → Service route → simulator (no filters)
//	authz           + ext_authz Check
//	bbr             + BBR ext_proc, still to the Service route
//	picker-request  + the pool's picker, request side only (--epp-skip-response)
//	full            + the picker on the response side: the chain as deployed
//
// Each iteration runs wrk for 2 s; reported are medians over iterations of requests per second
// and of this process's CPU per request (all servers; the client is not in it). The paths run
// one after the other, so run the benchmark more than once (-count) on a busy machine.
//
//	go test -run '^$' -bench ThroughputWrk -benchtime 5x ./internal/components/gateway/
func BenchmarkThroughputWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	noFilters := benchStack(b, func(c *Config) { c.AuthzAddress, c.BBRAddress = "", "" })
	noFilters.addServiceRoute("fixed", noFilters.models["phi-4-mini"].addrs[0])
	authzOnly := benchStack(b, func(c *Config) { c.BBRAddress = "" })
	authzOnly.addServiceRoute("fixed", authzOnly.models["phi-4-mini"].addrs[0])
	full := benchStack(b, nil)
	full.addServiceRoute("fixed", full.models["phi-4-mini"].addrs[0], gatewayv1.HTTPHeaderMatch{Name: modelHeader, Value: "phi-4-mini"},
		gatewayv1.HTTPHeaderMatch{Name: "X-Bench-Route", Value: "fixed"})
	lean := benchStack(b, func(c *Config) { c.SkipPickerResponse = true })

	dir := b.TempDir()
	script := func(name string, headers ...string) string {
		lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", benchBody)
		for i := 0; i < len(headers); i += 2 {
			lua += fmt.Sprintf("wrk.headers[%q] = %q\n", headers[i], headers[i+1])
		}
		path := filepath.Join(dir, name+".lua")
		if err := os.WriteFile(path, []byte(lua), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	plain, keyed := script("plain"), script("keyed", "Authorization", "Bearer "+testKey)
	fixed := script("fixed", "Authorization", "Bearer "+testKey, "X-Bench-Route", "fixed")
	paths := []struct{ name, url, script string }{
		{"direct", full.models["phi-4-mini"].urls[0], plain},
		{"proxy", noFilters.gw.URL, plain},
		{"authz", authzOnly.gw.URL, keyed},
		{"bbr", full.gw.URL, fixed},
		{"picker-request", lean.gw.URL, keyed},
		{"full", full.gw.URL, keyed},
	}

	type cost struct{ rps, cpu, syscalls, allocs float64 }
	run := func(url, script string, d time.Duration) cost {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		cpu, calls, mallocs := cpuTime(), ioSyscalls(), ms.Mallocs
		out, err := exec.Command(wrk, "-t1", "-c16", fmt.Sprintf("-d%ds", int(d.Seconds())), "-s", script, url+"/v1/chat/completions").CombinedOutput()
		used, calls := cpuTime()-cpu, ioSyscalls()-calls
		runtime.ReadMemStats(&ms)
		mallocs = ms.Mallocs - mallocs
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		text := string(out)
		if strings.Contains(text, "Non-2xx") || strings.Contains(text, "Socket errors") {
			b.Fatalf("wrk saw failures against %s:\n%s", url, text)
		}
		var rps, requests float64
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "Requests/sec:" {
				rps, _ = strconv.ParseFloat(f[1], 64)
			}
			if len(f) > 3 && f[1] == "requests" && f[2] == "in" {
				requests, _ = strconv.ParseFloat(f[0], 64)
			}
		}
		if rps == 0 || requests == 0 {
			b.Fatalf("no rate in wrk's output:\n%s", text)
		}
		return cost{rps, float64(used.Microseconds()) / requests, float64(calls) / requests, float64(mallocs) / requests}
	}
	// Each path is a sub-benchmark, so that one can be profiled alone
	// (-bench 'ThroughputWrk/proxy$' -cpuprofile …); its iterations alternate with nothing.
	rates := map[string]float64{}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			run(p.url, p.script, time.Second) // warm connections and pools
			var rps, cpu, calls, allocs []float64
			for range b.N {
				c := run(p.url, p.script, 2*time.Second)
				rps, cpu, calls, allocs = append(rps, c.rps), append(cpu, c.cpu), append(calls, c.syscalls), append(allocs, c.allocs)
			}
			median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
			rates[p.name] = median(rps)
			b.ReportMetric(rates[p.name], "req/s")
			b.ReportMetric(median(cpu), "cpu-µs/req")
			// Steadier than time on a shared machine: read/write system calls and heap
			// allocations per request, all servers together.
			b.ReportMetric(median(calls), "syscalls/req")
			b.ReportMetric(median(allocs), "allocs/req")
		})
	}
	if rates["direct"] > 0 && rates["full"] > 0 {
		b.Logf("full chain: %.1f%% of direct throughput", 100*rates["full"]/rates["direct"])
	}
}
