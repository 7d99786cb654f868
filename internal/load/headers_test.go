package load_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/load"
)

func TestParseHeaders(t *testing.T) {
	h, err := load.ParseHeaders([]string{"x-gateway-inference-objective: batch", "X-Extra:a", "x-extra: b ", "X-Empty:"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("X-Gateway-Inference-Objective") != "batch" || strings.Join(h.Values("X-Extra"), ",") != "a,b" || len(h.Values("X-Empty")) != 1 {
		t.Errorf("parsed %v", h)
	}
	for _, tc := range []struct{ flag, want string }{
		{"no-colon", `want "Name: value"`},
		{": value", "not a valid header name"},
		{"bad name: v", "not a valid header name"},
		{"Authorization: Bearer x", "use --api-key"},
		{"content-type: text/plain", "cannot be set here"},
		{"Host: example.com", "cannot be set here"},
		{"X-Ok: line\nbreak", "characters HTTP does not allow"},
	} {
		if _, err := load.ParseHeaders([]string{tc.flag}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.flag, err, tc.want)
		}
	}
}

// TestHeadersReachTheServer: every request of a run, and a chat, carry the extra headers next
// to the ones load sets itself; an invalid header set through the Go API is refused before
// anything is sent.
func TestHeadersReachTheServer(t *testing.T) {
	p := stacktest.StartSim(t, model, "sim-0", 1, nil)
	var mu sync.Mutex
	var seen []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		p.Sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	extra := http.Header{"X-Gateway-Inference-Objective": {"batch"}}

	rep, err := load.Run(t.Context(), load.Config{
		URL: srv.URL, APIKey: "k", Model: model, Concurrency: 2, Requests: 6, MaxTokens: 2, Stream: true, Headers: extra,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded < 6 {
		t.Fatalf("%d of the requests succeeded: %+v", rep.Succeeded, rep)
	}
	if _, err := load.Chat(t.Context(), load.ChatRequest{URL: srv.URL, Model: model, Prompt: "hi", MaxTokens: 2, Headers: extra, Timeout: 10 * time.Second}, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(seen)
	for i, h := range seen {
		if h.Get("X-Gateway-Inference-Objective") != "batch" || h.Get("Content-Type") != "application/json" {
			t.Errorf("request %d headers %v", i, h)
		}
	}
	mu.Unlock()

	bad := http.Header{"Authorization": {"Bearer other"}}
	if _, err := load.Run(t.Context(), load.Config{URL: srv.URL, Model: model, Requests: 1, MaxTokens: 2, Headers: bad}, nil); err == nil {
		t.Error("a run with an Authorization header was accepted")
	}
	if _, err := load.Chat(t.Context(), load.ChatRequest{URL: srv.URL, Model: model, Prompt: "hi", Headers: bad}, nil); err == nil {
		t.Error("a chat with an Authorization header was accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("refused runs still sent %d requests", len(seen)-n)
	}
}
