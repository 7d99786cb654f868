package gateway

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	oai "github.com/inference-sandbox/sandbox/internal/openai"
)

// TestMalformedInputCatalogue sends what clients get wrong and checks that each gets the
// right status with an OpenAI JSON error naming its source, that the gateway keeps serving,
// and that no goroutine is left behind.
func TestMalformedInputCatalogue(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 1}, "phi-4-mini")
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	send := func(method, path string, body io.Reader, length int64, headers ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, s.gw.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		if length == 0 {
			req.Body = http.NoBody
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testKey)
		for i := 0; i < len(headers); i += 2 {
			if headers[i+1] == "" {
				req.Header.Del(headers[i])
			} else {
				req.Header.Set(headers[i], headers[i+1])
			}
		}
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}
	good := func() {
		t.Helper()
		resp := send("POST", "/v1/chat/completions", strings.NewReader(chatBody("phi-4-mini")), int64(len(chatBody("phi-4-mini"))))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a good request got %d %s", resp.StatusCode, b)
		}
	}
	good() // warm connections and pools before counting goroutines
	noKeepAlive.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	huge := bytes.Repeat([]byte("x"), DefaultMaxBodyBytes+1024)
	hugeJSON := append(append([]byte(`{"model":"phi-4-mini","prompt":"`), huge...), '"', '}')
	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		raw     []byte // instead of body, e.g. too large to be a literal
		chunked bool   // send without Content-Length
		headers []string
		status  int
		code    string
		source  string
	}{
		{name: "non-JSON body", body: "hello there", status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "truncated JSON", body: `{"model":"phi-4-mini","messages":[{"role":"us`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "model is a number", body: `{"model":42,"messages":[]}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "model is an object", body: `{"model":{"name":"phi-4-mini"}}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "empty model", body: `{"model":"","messages":[{"role":"user","content":"hi"}]}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "null model", body: `{"model":null}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "no model field", body: `{"messages":[{"role":"user","content":"hi"}]}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "empty body", body: "", status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "JSON array body", body: `[{"model":"phi-4-mini"}]`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "JSON null body", body: `null`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "model with a newline", body: `{"model":"phi\n4"}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "huge body with Content-Length", raw: hugeJSON, status: 413, code: "request_too_large", source: "gateway"},
		{name: "huge chunked body", raw: hugeJSON, chunked: true, status: 413, code: "request_too_large", source: "gateway"},
		{name: "form content type", body: "model=phi-4-mini&prompt=hi",
			headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "unknown path without a model", path: "/v2/nothing", body: `{"input":"x"}`, status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "unknown path with a model", path: "/v1/unknown", body: chatBody("phi-4-mini"), status: 404, code: "not_found", source: "model"},
		{name: "GET on a POST route", method: "GET", path: "/v1/chat/completions", status: 400, code: "invalid_request_body", source: "bbr"},
		{name: "GET on a POST route with a model header", method: "GET", path: "/v1/chat/completions",
			headers: []string{modelHeader, "phi-4-mini"}, status: 405, code: "method_not_allowed", source: "model"},
		{name: "missing API key", body: chatBody("phi-4-mini"), headers: []string{"Authorization", ""}, status: 401, code: "invalid_api_key", source: "authz"},
		{name: "garbled API key", body: chatBody("phi-4-mini"), headers: []string{"Authorization", "Bearer"}, status: 401, code: "invalid_api_key", source: "authz"},
		{name: "wrong auth scheme", body: chatBody("phi-4-mini"), headers: []string{"Authorization", "Basic " + testKey}, status: 401, code: "invalid_api_key", source: "authz"},
		{name: "foreign namespace's key", body: chatBody("phi-4-mini"), headers: []string{"Authorization", "Bearer " + foreignKey}, status: 401, code: "invalid_api_key", source: "authz"},
		{name: "wrong key, unknown model: auth first", body: chatBody("nope"), headers: []string{"Authorization", "Bearer sk-wrong"}, status: 401, code: "invalid_api_key", source: "authz"},
		{name: "unknown model", body: chatBody("no-such-model"), status: 404, code: "model_not_found", source: "gateway"},
		{name: "unknown model named by header only", method: "DELETE", path: "/v1/models/x", headers: []string{modelHeader, "ghost"}, status: 404, code: "model_not_found", source: "gateway"},
		{name: "messages not a list", body: `{"model":"phi-4-mini","messages":"hi"}`, status: 400, code: "", source: "model"},
		{name: "negative max_tokens", body: `{"model":"phi-4-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}`, status: 400, code: "", source: "model"},
	}
	if len(cases) < 20 {
		t.Fatalf("the catalogue has %d cases, want at least 20", len(cases))
	}
	for _, tc := range cases {
		method, path := tc.method, tc.path
		if method == "" {
			method = "POST"
		}
		if path == "" {
			path = "/v1/chat/completions"
		}
		var body io.Reader = strings.NewReader(tc.body)
		length := int64(len(tc.body))
		if tc.raw != nil {
			body, length = bytes.NewReader(tc.raw), int64(len(tc.raw))
		}
		if tc.chunked {
			body, length = io.MultiReader(body), -1 // hides the length from the client
		}
		start := time.Now()
		resp := send(method, path, body, length, tc.headers...)
		e := errorReply(t, resp)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d (%+v), want %d", tc.name, resp.StatusCode, e, tc.status)
		}
		if tc.code != "" && e.Code != tc.code {
			t.Errorf("%s: code %v, want %s", tc.name, e.Code, tc.code)
		}
		if got := resp.Header.Get(oai.ErrorSourceHeader); got != tc.source {
			t.Errorf("%s: %s = %q, want %q", tc.name, oai.ErrorSourceHeader, got, tc.source)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}

	good()
	noKeepAlive.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	var now int
	if !waitFor(5*time.Second, func() bool { now = runtime.NumGoroutine(); return now <= baseline+2 }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before the catalogue, %d after\n%s", baseline, now, buf[:runtime.Stack(buf, true)])
	}
}
