package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// A client that keeps sending on one keep-alive connection while the data plane is told to stop
// must see every request answered: responses during the drain say Connection: close, the client
// reconnects (here to the same listener, in a cluster to another pod), a long answer begun
// before the signal finishes, and the server is gone once the drain is over.
func TestDrainLetsClientsMoveOffWithoutErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(600 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	})
	signal, sendSignal := context.WithCancel(context.Background())
	draining := new(atomic.Bool)
	done := make(chan error, 1)
	go func() {
		done <- extproc.ServeHTTPDraining(context.Background(), signal, h, ln,
			Drain{Delay: 400 * time.Millisecond, Timeout: 2 * time.Second, Draining: draining})
	}()
	url := "http://" + ln.Addr().String()

	var conns atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	post := func(path string) (*http.Response, error) {
		resp, err := client.Post(url+path, "application/json", nil)
		if err != nil {
			return nil, err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, err
	}

	// The long answer starts before the signal and must finish after it.
	var wg sync.WaitGroup
	wg.Add(1)
	var slowErr error
	go func() {
		defer wg.Done()
		if _, err := post("/slow"); err != nil {
			slowErr = err
		}
	}()
	for i := 0; i < 5; i++ {
		if _, err := post("/"); err != nil {
			t.Fatalf("before the signal: %v", err)
		}
	}
	sendSignal()
	var closes int
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		resp, err := post("/")
		if err != nil {
			t.Fatalf("during the drain: %v", err)
		}
		if resp.Close {
			closes++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if closes == 0 {
		t.Fatal("no response during the drain asked the client to close its connection")
	}
	if !draining.Load() {
		t.Fatal("the drainer does not report draining (readiness would stay up)")
	}
	wg.Wait()
	if slowErr != nil {
		t.Fatalf("an answer begun before the signal failed: %v", slowErr)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the server did not stop after the drain")
	}
	if _, err := post("/"); err == nil {
		t.Fatal("the server still answers after the drain")
	}
	t.Logf("%d connections for %d+ requests", conns.Load(), 5+closes)
}

// Readiness fails while draining so that the endpoint leaves the Service at once.
func TestReadinessFailsWhileDraining(t *testing.T) {
	var draining atomic.Bool
	h := healthHandler(func() bool { return true }, draining.Load)
	for _, tc := range []struct {
		draining bool
		want     int
	}{{false, http.StatusOK}, {true, http.StatusServiceUnavailable}} {
		draining.Store(tc.draining)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.want {
			t.Errorf("draining=%v: /readyz %d, want %d", tc.draining, rec.Code, tc.want)
		}
	}
}
