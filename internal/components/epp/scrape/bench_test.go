package scrape

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
)

const helperEnv = "EPP_SCRAPE_SIM_HELPER"

// TestMain doubles as a helper process that serves simulators, so that the CPU benchmark below
// measures the scraper alone and not the simulators rendering their metrics pages.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := serveSims(4); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveSims starts n simulators, serves one completion on each so that their histogram
// families are populated like a working engine's, prints their addresses and serves until
// stdin closes.
func serveSims(n int) error {
	var addrs []string
	for i := range n {
		cfg := sim.DefaultConfig()
		cfg.Model = "bench-model"
		cfg.Seed = int64(i + 1)
		cfg.EnableKVCache = true
		s, err := sim.New(cfg, func(string) string { return "" })
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(ln, s) }()
		addr := ln.Addr().String()
		resp, err := http.Post("http://"+addr+"/v1/completions", "application/json",
			strings.NewReader(`{"model":"bench-model","prompt":"warm up the histograms","max_tokens":8}`))
		if err != nil {
			return err
		}
		resp.Body.Close()
		addrs = append(addrs, addr)
	}
	fmt.Println(strings.Join(addrs, ","))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleScrape4Endpoints measures the scraper's CPU share while it polls four idle
// simulators (in another process) every 50 ms. Each iteration is one second of wall time; the
// figure that matters is %core.
func BenchmarkIdleScrape4Endpoints(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("simulator helper: %v", err)
	}
	specs, err := datastore.ParseStatic(strings.TrimSpace(line))
	if err != nil {
		b.Fatal(err)
	}
	store := datastore.NewStore()
	store.Replace(specs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		New(Options{Interval: 50 * time.Millisecond}).Run(ctx, store)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // connections open, buffers grown
	for _, e := range store.Endpoints() {
		if !e.Fresh(time.Now(), time.Second) {
			b.Fatalf("endpoint %s was not scraped", e.Address)
		}
	}
	b.ResetTimer()
	wall := time.Now()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		time.Sleep(time.Second)
	}
	used, elapsed := cpuTime()-cpu, time.Since(wall)
	b.StopTimer()
	b.ReportMetric(100*used.Seconds()/elapsed.Seconds(), "%core")
}
