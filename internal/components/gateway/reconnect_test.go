package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
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
// keep failing on its old connection's backoff. While the picker is down, the FailClose pool
// answers 502, except that requests arriving shortly before it is back wait for it.
func TestPickerRestartMidTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs traffic for about two seconds")
	}
	s := newStack(t, stackOptions{simsPerModel: 2}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	addr := freeAddr(t)
	stop := runPicker(t, m, addr)
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = addr })

	client := &http.Client{Timeout: 10 * time.Second}
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

	// About 200 requests a second for 2.2 s; the picker is down from 0.6 s for 0.4 s.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(2200 * time.Millisecond)
		for time.Now().Before(end) {
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
	back := time.Now()
	<-done
	wg.Wait()

	var before, during, after, afterFailed, duringFailed int
	for _, o := range results {
		switch {
		case o.start.Before(down):
			before++
			if o.status != 200 {
				// Streams in flight when the picker stops drain; new ones go to the next
				// connection, which is refused: both are the picker's outage, but only those
				// that began once it was stopping may fail.
				if o.start.Before(down.Add(-100 * time.Millisecond)) {
					t.Errorf("a request sent %v before the picker stopped failed with %d", down.Sub(o.start), o.status)
				}
			}
		case o.start.Before(back):
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
	t.Logf("before: %d, picker down: %d (%d failed), after: %d (%d failed)", before, during, duringFailed, after, afterFailed)
	if after < 100 {
		t.Fatalf("only %d requests after the restart; the machine is too slow for this test", after)
	}
	if afterFailed > 0 {
		t.Errorf("%d of %d requests sent after the picker was back failed", afterFailed, after)
	}
	if duringFailed == during {
		t.Errorf("every request while the picker was down failed; those arriving shortly before it came back should have waited for it")
	}
}
