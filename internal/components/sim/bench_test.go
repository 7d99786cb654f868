package sim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchBody is the request of the documented wrk recipe: a zero-latency chat completion of
// exactly 16 tokens.
const benchBody = `{"model":"test-model","messages":[{"role":"user","content":"Hello, how are you today?"}],"max_tokens":16,"ignore_eos":true}`

// BenchmarkChatCompletionHandler measures the simulator's own cost per request, without
// sockets.
func BenchmarkChatCompletionHandler(b *testing.B) {
	s, _ := newTestServer(b, func(c *Config) { c.MaxNumSeqs = 64 })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchBody)))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkStreamingChatHandler is the same for a 16-token SSE stream with usage.
func BenchmarkStreamingChatHandler(b *testing.B) {
	s, _ := newTestServer(b, func(c *Config) { c.MaxNumSeqs = 64 })
	body := strings.Replace(benchBody, `"ignore_eos":true`, `"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}`, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

// BenchmarkChatCompletionLoopback includes net/http on both sides over 127.0.0.1.
func BenchmarkChatCompletionLoopback(b *testing.B) {
	_, ts := newTestServer(b, func(c *Config) { c.MaxNumSeqs = 64 })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(benchBody))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkKVCachePrefixHit measures tokenising, hashing and pinning a 1,000-token prompt
// that is fully cached.
func BenchmarkKVCachePrefixHit(b *testing.B) {
	s, _ := newTestServer(b, func(c *Config) { c.EnableKVCache, c.MaxModelLen = true, 4096 })
	body := `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("cached words ", 500) + `"}],"max_tokens":1}`
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
