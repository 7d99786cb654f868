package notfound

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The exact bodies of upstream's fallback routes (upstream-production-stack §1.7).
const (
	wantNotFound = `{"error":{"message":"The model does not exist.","type":"invalid_request_error","param":"model","code":"model_not_found"}}` + "\n"
	wantNoModel  = `{"error":{"message":"The request body did not specify a model; the \"model\" field is required.","type":"invalid_request_error","param":"model","code":"invalid_request_body"}}` + "\n"
)

func start(t *testing.T) string {
	t.Helper()
	ln := extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error { return Serve(ctx, ln) })
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return "http://" + ln.Addr().String()
}

func TestResponses(t *testing.T) {
	base := start(t)
	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		status                   int
		wantBody, source, model  string
	}{
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"nope"}`,
			map[string]string{"X-Gateway-Model-Name": "nope"}, 404, wantNotFound, "gateway", "nope"},
		{"unknown model, lower-case header", "POST", "/v1/completions", `{"model":"x/y"}`,
			map[string]string{"x-gateway-model-name": "x/y"}, 404, wantNotFound, "gateway", "x/y"},
		{"header present but empty", "POST", "/v1/chat/completions", `{}`,
			map[string]string{"X-Gateway-Model-Name": ""}, 404, wantNotFound, "gateway", ""},
		{"no model", "POST", "/v1/chat/completions", `{"messages":[]}`, nil, 400, wantNoModel, "bbr", ""},
		{"unknown path", "POST", "/v2/whatever", `{}`, nil, 400, wantNoModel, "bbr", ""},
		{"GET", "GET", "/healthz", "", nil, 400, wantNoModel, "bbr", ""},
		{"big body", "POST", "/v1/chat/completions", strings.Repeat("x", 2<<20), nil, 400, wantNoModel, "bbr", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header[k] = []string{v} // as sent, without canonicalising
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if string(b) != tc.wantBody {
				t.Errorf("body = %q\nwant   %q", b, tc.wantBody)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("content-type = %q", got)
			}
			if got := resp.Header.Get("X-Kaito-Error-Source"); got != tc.source {
				t.Errorf("x-kaito-error-source = %q, want %q", got, tc.source)
			}
			got, present := resp.Header["X-Kaito-Requested-Model"]
			if tc.model == "" && present {
				t.Errorf("x-kaito-requested-model = %q, want none", got)
			}
			if tc.model != "" && resp.Header.Get("X-Kaito-Requested-Model") != tc.model {
				t.Errorf("x-kaito-requested-model = %q, want %q", got, tc.model)
			}
		})
	}
}

func TestHeadHasNoBody(t *testing.T) {
	base := start(t)
	resp, err := http.Head(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || len(b) != 0 || resp.ContentLength != int64(len(wantNoModel)) {
		t.Errorf("HEAD: %d, %d body bytes, content-length %d", resp.StatusCode, len(b), resp.ContentLength)
	}
}
