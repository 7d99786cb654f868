package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

func decodeError(t *testing.T, body string) openai.Error {
	t.Helper()
	var env openai.ErrorEnvelope
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return env.Error
}

func TestKVCacheTooSmallIsUpstream500(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.EnableKVCache, c.KVCacheSize = true, 2 })
	for _, stream := range []bool{false, true} {
		status, body, _ := post(t, ts.URL+"/v1/chat/completions", chatBody(strings.Repeat("many tokens here ", 20), 5, stream))
		e := decodeError(t, body)
		if status != http.StatusInternalServerError || e.Type != "InternalServerError" || !strings.Contains(e.Message, "kv cache does not have sufficient capacity") {
			t.Errorf("stream=%v: %d %+v", stream, status, e)
		}
	}
}

func TestSyntheticAndInjectedErrors(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) {
		c.FailureInjectionRate = 100
		c.FailureTypes = []string{FailureServerError}
	})
	status, body, _ := post(t, ts.URL+"/v1/chat/completions", chatBody("x", 2, false))
	if e := decodeError(t, body); status != http.StatusServiceUnavailable || e.Message != "server is overloaded or not ready yet" {
		t.Errorf("injected: %d %s", status, body)
	}
	status, body, _ = post(t, ts.URL+"/v1/chat/completions", chatBody("x", 2, false), "X-Return-Error", "418")
	if e := decodeError(t, body); status != 418 || e.Type != "APIConnectionError" || e.Code != float64(418) {
		t.Errorf("X-Return-Error: %d %s", status, body)
	}
	status, _, _ = post(t, ts.URL+"/v1/chat/completions", chatBody("x", 2, false), "X-Return-Error", "teapot")
	if status != http.StatusBadRequest {
		t.Errorf("non-integer X-Return-Error: %d", status)
	}
}

func TestResponseHeadersAndReadiness(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Model, cfg.Port = testModel, 5000
	cfg.EnableRequestIDHeaders = true
	cfg.StartupDuration = Duration(time.Hour)
	env := map[string]string{"POD_NAME": "pod-a", "POD_NAMESPACE": "models"}
	s, err := New(cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	status, body, h := post(t, ts.URL+"/v1/chat/completions", chatBody("x", 2, false), "X-Request-Id", "req-42")
	if status != http.StatusOK || h.Get("X-Inference-Pod") != "pod-a" || h.Get("X-Inference-Port") != "5000" ||
		h.Get("X-Inference-Namespace") != "models" || h.Get("X-Request-Id") != "req-42" || !strings.Contains(body, `"id":"chatcmpl-req-42"`) {
		t.Errorf("headers %v body %s", h, body)
	}
	for path, want := range map[string]int{"/health": 200, "/health/ready": 503, "/ready": 404} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestCacheThresholdAndRemoteDecode(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.EnableKVCache = true })
	body := `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("w ", 40) + `"}],"max_tokens":5,"cache_hit_threshold":0.5}`
	status, resp, _ := post(t, ts.URL+"/v1/chat/completions", body)
	var out openai.ChatCompletion
	if err := json.Unmarshal([]byte(resp), &out); err != nil || status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	if out.Choices[0].FinishReason != openai.FinishCacheThreshold || out.Usage.CompletionTokens != 0 {
		t.Errorf("cold cache below threshold: %+v", out.Choices[0])
	}
	// Now the prompt is cached: the same request passes the threshold.
	_, resp, _ = post(t, ts.URL+"/v1/chat/completions", body)
	_ = json.Unmarshal([]byte(resp), &out)
	if out.Choices[0].FinishReason == openai.FinishCacheThreshold || out.Usage.PromptTokensDetails.CachedTokens == 0 {
		t.Errorf("warm cache: %s", resp)
	}
	_, resp, _ = post(t, ts.URL+"/v1/chat/completions", chatBody("x", 5, false), "X-Cache-Threshold-Finish-Reason", "true")
	if !strings.Contains(resp, `"finish_reason":"cache_threshold"`) {
		t.Errorf("forced cache_threshold: %s", resp)
	}
	pd := `{"model":"test-model","messages":[{"role":"user","content":"x"}],"kv_transfer_params":{"do_remote_decode":true}}`
	_, resp, _ = post(t, ts.URL+"/v1/chat/completions", pd)
	if !strings.Contains(resp, `"finish_reason":"remote_decode"`) || !strings.Contains(resp, `"kv_transfer_params":{`) {
		t.Errorf("remote decode: %s", resp)
	}
}

func TestTokenizeAndLoras(t *testing.T) {
	_, ts := newTestServer(t, nil)
	status, body, _ := post(t, ts.URL+"/tokenize", `{"model":"test-model","prompt":"Hello, world!"}`)
	if status != 200 || !strings.Contains(body, `"count":4`) || !strings.Contains(body, `"token_strs":null`) || !strings.Contains(body, `"max_model_len":1024`) {
		t.Errorf("tokenize: %d %s", status, body)
	}
	if status, _, _ := post(t, ts.URL+"/tokenize", `{"prompt":"a","messages":[]}`); status != 400 {
		t.Errorf("prompt and messages together: %d", status)
	}
	if status, _, _ := post(t, ts.URL+"/v1/load_lora_adapter", `{"lora_name":"ad1","lora_path":"/a"}`); status != 200 {
		t.Fatalf("load lora: %d", status)
	}
	status, body, _ = post(t, ts.URL+"/v1/chat/completions", `{"model":"ad1","messages":[{"role":"user","content":"x"}],"max_tokens":2}`)
	if status != 200 || !strings.Contains(body, `"model":"ad1"`) {
		t.Errorf("lora request: %d %s", status, body)
	}
	f := scrape(t, ts.URL)
	if value(f, "vllm:request_success_total", map[string]string{"model_name": "ad1", "finish_reason": "length"})+
		value(f, "vllm:request_success_total", map[string]string{"model_name": "ad1", "finish_reason": "stop"}) != 1 {
		t.Error("lora request not counted under its own model_name")
	}
	if status, _, _ := post(t, ts.URL+"/v1/unload_lora_adapter", `{"lora_name":"ad1"}`); status != 200 {
		t.Errorf("unload: %d", status)
	}
	if status, _, _ := post(t, ts.URL+"/v1/chat/completions", `{"model":"ad1","messages":[{"role":"user","content":"x"}]}`); status != 404 {
		t.Errorf("unloaded lora still served: %d", status)
	}
}

func TestResponseLengthDistribution(t *testing.T) {
	r := newLockedRand(3)
	counts := map[int]int{}
	for i := 0; i < 6000; i++ {
		n := responseLength(r, 600, true, false, 1000)
		if n < 1 || n > 600 {
			t.Fatalf("length %d outside [1,600]", n)
		}
		counts[n]++
	}
	short, last := 0, 0
	for n, c := range counts {
		if n <= 60 {
			short += c
		}
		if n > 580 {
			last += c
		}
	}
	// Buckets 1-3 (first 60 tokens) hold 70%; the last 20 tokens hold 15%.
	if short < 3900 || short > 4500 || last < 700 || last > 1100 {
		t.Errorf("short %d / 6000, last %d / 6000", short, last)
	}
	if n := responseLength(r, 7, true, true, 1000); n != 7 {
		t.Errorf("ignore_eos gives %d, want 7", n)
	}
	for i := 0; i < 100; i++ {
		if n := responseLength(r, 0, false, false, 10); n < 1 || n > 10 {
			t.Fatalf("no max, 10 tokens of context: %d", n)
		}
	}
}

func TestDummyTokenizer(t *testing.T) {
	got := splitTokens(nil, "  Hello, world!  How's it\tgoing?\n")
	want := []string{"Hello", ", ", "world", "!  ", "How", "'", "s ", "it\t", "going", "?\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("tokens %q, want %q", got, want)
	}
	if countTokens("é日本") != 3 || len(tokenIDs(nil, "a b")) != 2 || tokenIDs(nil, "a")[0] != fnv32a("a") {
		t.Error("non-ASCII runes or ids wrong")
	}
}

func TestAdminConfigRuntimeUpdate(t *testing.T) {
	_, ts := newTestServer(t, nil)
	if status, body, _ := post(t, ts.URL+"/admin/config", `{"max-num-seqs":3}`); status != 400 || !strings.Contains(body, "max-num-seqs") {
		t.Errorf("non-runtime key: %d %s", status, body)
	}
	if status, body, _ := post(t, ts.URL+"/admin/config", `{"time-to-first-token":"10ms","time-to-first-token-std-dev":"9ms"}`); status != 400 {
		t.Errorf("invalid update accepted: %d %s", status, body)
	}
	if status, body, _ := post(t, ts.URL+"/admin/config", `{"failure-injection-rate":100,"failure-types":["rate_limit"],"inter-token-latency":"2ms"}`); status != 200 {
		t.Fatalf("update: %d %s", status, body)
	}
	if status, _, _ := post(t, ts.URL+"/v1/chat/completions", chatBody("x", 2, false)); status != http.StatusTooManyRequests {
		t.Errorf("injected rate_limit after update: %d", status)
	}
	resp, err := http.Get(ts.URL + "/admin/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["inter-token-latency"] != "2ms" || got["failure-injection-rate"] != float64(100) || got["model"] != testModel {
		t.Errorf("GET /admin/config = %v", got)
	}
}
