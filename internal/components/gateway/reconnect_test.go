package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp"
	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
)

// runPicker starts the offline EPP in front of the model's simulators on addr and waits until
// it knows them. stop shuts it down as a pod's SIGTERM does (GOAWAY, in-flight streams drain).
func runPicker(t testing.TB, m *testModel, addr string) (stop func()) {
	t.Helper()
	var specs []datastore.Spec
	for _, a := range m.addrs {
		specs = append(specs, datastore.Spec{Name: a, Address: a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := epp.Start(ctx, epp.Options{
		Source: datastore.StaticSource(specs), GRPCAddr: addr, HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		RefreshMetricsInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		t.Fatalf("picker on %s: %v", addr, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := p.Wait(); err != nil {
				t.Errorf("picker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	if !waitFor(5*time.Second, func() bool { return len(p.Store().Endpoints()) == len(specs) }) {
		t.Fatal("the picker never learned its endpoints")
	}
	return stop
}

// freeAddr returns a loopback address nobody listens on, for a server that must come back on
// the same port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type outcome struct {
	start  time.Time
	status int // 0: transport error
}

// TestPickerRestartMidTraffic stops the real endpoint picker in the middle of steady traffic
// and starts it again on the same address, as a picker pod restart behind its Service looks to
// the gateway. Requests started once the picker is back must all succeed: the gateway must not
// keep failing on its old connection's backoff. Requests arriving while it is down wait for it
// (ReconnectWait, long here so that a slow machine does not turn waits into failures) instead of
// all failing at once.
func TestPickerRestartMidTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs traffic for a few seconds")
	}
	s := newStack(t, stackOptions{simsPerModel: 2, gateway: func(c *Config) {
		c.PickerTimeout, c.ReconnectWait = 10*time.Second, 2*time.Second
	}}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	addr := freeAddr(t)
	stop := runPicker(t, m, addr)
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = addr })

	client := &http.Client{Timeout: 20 * time.Second}
	var mu sync.Mutex
	var results []outcome
	var wg sync.WaitGroup
	send := func() {
		defer wg.Done()
		o := outcome{start: time.Now()}
		req, _ := http.NewRequest("POST", s.gw.URL+"/v1/chat/completions", strings.NewReader(chatBody("phi-4-mini")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testKey)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			o.status = resp.StatusCode
		}
		mu.Lock()
		results = append(results, o)
		mu.Unlock()
	}
	var back atomic.Int64 // unix nanoseconds; 0 until the picker is back
	startedAfterBack := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range results {
			if b := back.Load(); b != 0 && o.start.UnixNano() >= b {
				n++
			}
		}
		return n
	}

	// About 200 requests a second until 100 sent after the restart have been answered (at most
	// 15 s); the picker is down from 0.6 s for 0.4 s.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(15 * time.Second)
		for time.Now().Before(end) && startedAfterBack() < 100 {
			<-tick.C
			wg.Add(1)
			go send()
		}
	}()
	time.Sleep(600 * time.Millisecond)
	stop()
	down := time.Now()
	time.Sleep(400 * time.Millisecond)
	runPicker(t, m, addr)
	back.Store(time.Now().UnixNano())
	<-done
	wg.Wait()

	var before, during, after, beforeFailed, duringFailed, afterFailed int
	for _, o := range results {
		switch {
		case o.start.Before(down):
			// Streams in flight when the picker stops drain; on a slow machine some of these
			// requests reach the gateway only once it is stopping, so they are only counted.
			before++
			if o.status != 200 {
				beforeFailed++
			}
		case o.start.UnixNano() < back.Load():
			during++
			if o.status != 200 {
				duringFailed++
				if o.status != http.StatusBadGateway {
					t.Errorf("picker down: status %d, want 502 epp_unavailable", o.status)
				}
			}
		default:
			after++
			if o.status != 200 {
				afterFailed++
			}
		}
	}
	t.Logf("before: %d (%d failed), picker down: %d (%d failed), after: %d (%d failed)", before, beforeFailed, during, duringFailed, after, afterFailed)
	if after < 100 {
		t.Fatalf("only %d requests after the restart within 15 s", after)
	}
	if afterFailed > 0 {
		t.Errorf("%d of %d requests sent after the picker was back failed", afterFailed, after)
	}
	if during > 0 && duringFailed == during {
		t.Errorf("every request while the picker was down failed; they should have waited for it")
	}
}
