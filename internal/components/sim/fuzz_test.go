package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// decoderSeeds cover the request shapes and the validation paths of both endpoints.
var decoderSeeds = []string{
	`{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"test-model","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}],"n":3,"max_completion_tokens":4}`,
	`{"model":"test-model","messages":[{"role":"user","content":"s"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3}`,
	`{"model":"test-model","messages":[],"max_tokens":0}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"ignore_eos":true}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"kv_transfer_params":{"do_remote_decode":true},"stream":true}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"cache_hit_threshold":0.5}`,
	`{"model":"test-model","prompt":"once upon","max_tokens":5}`,
	`{"model":"test-model","prompt":["a","b"],"n":2,"stream":true}`,
	`{"model":"test-model","prompt":[1,2,3]}`,
	`{"model":"test-model","prompt":[[1],[2,3]],"echo":true}`,
	`{"model":"test-model","prompt":[""]}`,
	`{"model":"other","prompt":"x"}`,
	`{"model":"test-model","messages":[{"role":"user","content":5}]}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"max_tokens":2000}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"n":100000}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"},"maxItems":2},"b":{"type":"object","properties":{"c":{"type":"boolean"}}}},"required":["a"]}}}],"tool_choice":"required","stream":true}`,
	`{"model":"test-model","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},"n":2}`,
	`{"model":`, `[]`, `null`, ``, "\xff\xfe", `{"model":"test-model","prompt":{"a":1}}`,
}

func newFuzzServer(t testing.TB) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Model, cfg.Seed = testModel, 1
	cfg.MaxNumSeqs, cfg.MaxWaitingQueueLength = 4, 8
	cfg.EnableKVCache, cfg.KVCacheSize = true, 256
	s, err := New(cfg, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkResponse asserts the decoder's contract: any body yields either a well-formed success
// or an OpenAI error envelope whose type and code agree with the HTTP status.
func checkResponse(t *testing.T, s *Server, path, body string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	s.ServeHTTP(rec, req)
	out := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		if rec.Header().Get("Content-Type") == "text/event-stream" {
			if !strings.HasSuffix(string(out), "data: [DONE]\n\n") {
				t.Fatalf("stream for %q does not end with [DONE]: %q", body, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("200 with invalid JSON for %q: %q", body, out)
		}
		return
	}
	var env openai.ErrorEnvelope
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("status %d for %q with non-JSON body %q: %v", rec.Code, body, out, err)
	}
	if env.Error.Message == "" || env.Error.Type != openai.TypeForStatus(rec.Code) || env.Error.Code != float64(rec.Code) {
		t.Fatalf("status %d for %q with envelope %s", rec.Code, body, out)
	}
	if rec.Code >= 500 && rec.Code != http.StatusInternalServerError {
		t.Fatalf("unexpected status %d for %q", rec.Code, body)
	}
}

func FuzzChatCompletionsDecoder(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add(s)
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) { checkResponse(t, s, "/v1/chat/completions", body) })
}

func FuzzCompletionsDecoder(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add(s)
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) { checkResponse(t, s, "/v1/completions", body) })
}

// TestDecoderSeedCorpus runs the fuzz seeds as a plain test, so `go test` without -fuzz
// exercises every validation path of both endpoints, and checks the expected statuses.
func TestDecoderSeedCorpus(t *testing.T) {
	s := newFuzzServer(t)
	statuses := map[int]int{}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		for _, body := range decoderSeeds {
			checkResponse(t, s, path, body)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
			statuses[rec.Code]++
		}
	}
	for _, code := range []int{200, 400, 404, 429} {
		if statuses[code] == 0 {
			t.Errorf("no seed produced status %d (%v)", code, statuses)
		}
	}
}
