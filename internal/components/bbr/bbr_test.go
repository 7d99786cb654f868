package bbr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type harness struct {
	client     extprocv3.ExternalProcessorClient
	health     healthpb.HealthClient
	metricsURL string
}

// start runs a real BBR (Serve) on loopback listeners and connects a gRPC client to it.
func start(t *testing.T, o Options) *harness {
	t.Helper()
	ext, hl, ml := extproctest.Listen(t), extproctest.Listen(t), extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error { return Serve(ctx, o, ext, hl, ml) })
	big := grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20))
	return &harness{
		client:     extprocv3.NewExternalProcessorClient(extproctest.Dial(t, ext, big)),
		health:     healthpb.NewHealthClient(extproctest.Dial(t, hl)),
		metricsURL: "http://" + ml.Addr().String() + "/metrics",
	}
}

// run sends msgs on one stream, closes the sending side and collects every reply until BBR ends
// the stream. It returns the replies and the stream's final error (nil for a clean end).
func (h *harness) run(t *testing.T, msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		// After an ImmediateResponse BBR has closed the stream; the reason surfaces in Recv.
		if err := s.Send(m); err != nil {
			break
		}
	}
	_ = s.CloseSend()
	var out []*extprocv3.ProcessingResponse
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

func headers(eos bool, mode filterv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingRequest {
	r := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte("/v1/chat/completions")},
		}},
		EndOfStream: eos,
	}}}
	if mode != filterv3.ProcessingMode_NONE {
		r.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: mode, ResponseBodyMode: mode}
	}
	return r
}

func body(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

// chunks splits b into n nearly equal body messages, the last one with end_of_stream.
func chunks(b string, n int) []*extprocv3.ProcessingRequest {
	var out []*extprocv3.ProcessingRequest
	size := (len(b) + n - 1) / n
	for len(b) > size {
		out = append(out, body(b[:size], false))
		b = b[size:]
	}
	return append(out, body(b, true))
}

const (
	buffered = filterv3.ProcessingMode_BUFFERED
	duplex   = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
)

func modelHeader(t *testing.T, c *extprocv3.CommonResponse) (string, bool) {
	t.Helper()
	h := http.Header{}
	if err := extproc.ApplyHeaderMutation(h, c.GetHeaderMutation()); err != nil {
		t.Fatal(err)
	}
	if len(h) > 1 {
		t.Errorf("unexpected headers set: %v", h)
	}
	v, ok := h[http.CanonicalHeaderKey(ModelHeader)]
	if ok && !c.GetClearRouteCache() {
		t.Error("model header set without clear_route_cache: the route would not be re-matched")
	}
	if ok {
		return v[0], true
	}
	return "", false
}

// checkBuffered asserts BBR's BUFFERED answer: an empty headers reply, then a body reply that
// carries the header mutation (or nothing) and leaves the body alone.
func checkBuffered(t *testing.T, replies []*extprocv3.ProcessingResponse, err error, wantModel string) {
	t.Helper()
	if err != nil {
		t.Fatalf("stream error: %v", err)
	}
	if len(replies) != 2 {
		t.Fatalf("got %d replies, want 2: %v", len(replies), replies)
	}
	if hr := replies[0].GetRequestHeaders(); hr == nil || hr.GetResponse() != nil {
		t.Errorf("headers reply = %v, want an empty HeadersResponse", replies[0])
	}
	br := replies[1].GetRequestBody()
	if br == nil {
		t.Fatalf("second reply = %v, want a BodyResponse", replies[1])
	}
	if br.GetResponse().GetBodyMutation() != nil {
		t.Error("BUFFERED reply mutates the body")
	}
	got, ok := modelHeader(t, br.GetResponse())
	if wantModel == "" && ok {
		t.Errorf("model header %q set, want none", got)
	}
	if wantModel != "" && got != wantModel {
		t.Errorf("model header = %q, want %q", got, wantModel)
	}
}

// checkDuplex asserts BBR's FULL_DUPLEX_STREAMED answer: the headers reply with the mutation,
// then the whole body again in chunks of at most 62,000 bytes, the last with endOfStream.
func checkDuplex(t *testing.T, replies []*extprocv3.ProcessingResponse, err error, wantModel, wantBody string, endOfStream bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("stream error: %v", err)
	}
	if len(replies) < 2 {
		t.Fatalf("got %d replies, want headers + body: %v", len(replies), replies)
	}
	hr := replies[0].GetRequestHeaders()
	if hr == nil {
		t.Fatalf("first reply = %v, want a HeadersResponse", replies[0])
	}
	got, ok := modelHeader(t, hr.GetResponse())
	if wantModel == "" && ok {
		t.Errorf("model header %q set, want none", got)
	}
	if wantModel != "" && got != wantModel {
		t.Errorf("model header = %q, want %q", got, wantModel)
	}
	var b []byte
	for i, r := range replies[1:] {
		sr := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			t.Fatalf("reply %d = %v, want a streamed body chunk", i+1, r)
		}
		if len(sr.GetBody()) > extproc.MaxChunk {
			t.Errorf("chunk of %d bytes", len(sr.GetBody()))
		}
		if last := i == len(replies)-2; sr.GetEndOfStream() != (last && endOfStream) {
			t.Errorf("chunk %d end_of_stream = %v", i, sr.GetEndOfStream())
		}
		b = append(b, sr.GetBody()...)
	}
	if string(b) != wantBody {
		t.Errorf("body came back changed: %d bytes, want %d", len(b), len(wantBody))
	}
}

func TestModelToHeader(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name, body, model string
	}{
		{"chat", `{"model":"phi-4-mini","messages":[{"role":"user","content":"hi"}]}`, "phi-4-mini"},
		{"model last", `{"messages":[{"role":"user","content":"a \"model\": \"x\""}],"model":"ministral-3b"}`, "ministral-3b"},
		{"escaped", `{"model":"org\/m\u0031"}`, "org/m1"},
		{"missing", `{"messages":[]}`, ""},
		{"nested only", `{"extra":{"model":"x"}}`, ""},
		{"wrong case", `{"Model":"x"}`, ""},
		{"null", `{"model":null}`, ""},
		{"empty", `{"model":""}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/buffered", func(t *testing.T) {
			replies, err := h.run(t, headers(false, buffered), body(tc.body, true))
			checkBuffered(t, replies, err, tc.model)
		})
		t.Run(tc.name+"/duplex", func(t *testing.T) {
			msgs := append([]*extprocv3.ProcessingRequest{headers(false, duplex)}, chunks(tc.body, 3)...)
			replies, err := h.run(t, msgs...)
			checkDuplex(t, replies, err, tc.model, tc.body, true)
		})
	}
}

func TestStreamingFlagWithoutProtocolConfig(t *testing.T) {
	in := `{"model":"m","prompt":"p"}`
	t.Run("streaming", func(t *testing.T) {
		h := start(t, Options{Streaming: true})
		replies, err := h.run(t, append([]*extprocv3.ProcessingRequest{headers(false, filterv3.ProcessingMode_NONE)}, chunks(in, 4)...)...)
		checkDuplex(t, replies, err, "m", in, true)
	})
	t.Run("buffered", func(t *testing.T) {
		h := start(t, Options{Streaming: false})
		replies, err := h.run(t, headers(false, filterv3.ProcessingMode_NONE), body(in, true))
		checkBuffered(t, replies, err, "m")
	})
	t.Run("announced mode wins", func(t *testing.T) {
		h := start(t, Options{Streaming: true})
		replies, err := h.run(t, headers(false, buffered), body(in, true))
		checkBuffered(t, replies, err, "m")
	})
}

func TestBadBodies(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name, body, param string
	}{
		{"not JSON", `model=phi`, ""},
		{"truncated", `{"model":"phi-4-mini","messages":[{"role":"us`, ""},
		{"array", `[{"model":"m"}]`, ""},
		{"whitespace", "  \n", ""},
		{"number", `{"model":42}`, "model"},
		{"object", `{"model":{"name":"m"}}`, "model"},
		{"bool", `{"model":true}`, "model"},
		{"newline in model", `{"model":"a\nb"}`, "model"},
	}
	for _, tc := range cases {
		for _, mode := range []filterv3.ProcessingMode_BodySendMode{buffered, duplex} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				msgs := append([]*extprocv3.ProcessingRequest{headers(false, mode)}, chunks(tc.body, 2)...)
				if mode == buffered {
					msgs = []*extprocv3.ProcessingRequest{headers(false, mode), body(tc.body, true)}
				}
				replies, err := h.run(t, msgs...)
				if err != nil {
					t.Fatalf("stream error %v: a client mistake must be answered, not fail the filter", err)
				}
				last := replies[len(replies)-1].GetImmediateResponse()
				if last == nil {
					t.Fatalf("last reply = %v, want an ImmediateResponse", replies[len(replies)-1])
				}
				checkError(t, last, http.StatusBadRequest, "invalid_request_body", tc.param)
			})
		}
	}
}

func checkError(t *testing.T, ir *extprocv3.ImmediateResponse, status int, code, param string) {
	t.Helper()
	if int(ir.GetStatus().GetCode()) != status {
		t.Errorf("status = %d, want %d", ir.GetStatus().GetCode(), status)
	}
	hdr := http.Header{}
	if err := extproc.ApplyHeaderMutation(hdr, ir.GetHeaders()); err != nil {
		t.Fatal(err)
	}
	if hdr.Get("Content-Type") != "application/json" || hdr.Get(openai.ErrorSourceHeader) != "bbr" {
		t.Errorf("headers = %v", hdr)
	}
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ir.GetBody(), &env); err != nil {
		t.Fatalf("body %q: %v", ir.GetBody(), err)
	}
	if env.Error.Code != code || env.Error.Type != "invalid_request_error" || env.Error.Message == "" {
		t.Errorf("body = %s", ir.GetBody())
	}
	if (param == "") != (env.Error.Param == nil) || (param != "" && *env.Error.Param != param) {
		t.Errorf("param = %v, want %q", env.Error.Param, param)
	}
}

func TestHugeBodies(t *testing.T) {
	h := start(t, Options{MaxBodyBytes: 8 << 20})
	// 5 MB of prompt after the model: more than gRPC's default 4 MiB message limit and many
	// 62,000-byte chunks on the way back.
	huge := `{"model":"big","prompt":"` + strings.Repeat("word ", 1<<20) + `"}`
	t.Run("buffered", func(t *testing.T) {
		replies, err := h.run(t, headers(false, buffered), body(huge, true))
		checkBuffered(t, replies, err, "big")
	})
	t.Run("duplex", func(t *testing.T) {
		msgs := append([]*extprocv3.ProcessingRequest{headers(false, duplex)}, chunks(huge, 80)...)
		replies, err := h.run(t, msgs...)
		checkDuplex(t, replies, err, "big", huge, true)
		if want := len(huge)/extproc.MaxChunk + 1; len(replies)-1 != want {
			t.Errorf("%d body chunks, want %d", len(replies)-1, want)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		over := `{"model":"big","prompt":"` + strings.Repeat("x", 9<<20) + `"}`
		msgs := append([]*extprocv3.ProcessingRequest{headers(false, duplex)}, chunks(over, 200)...)
		replies, err := h.run(t, msgs...)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 1 || replies[0].GetImmediateResponse() == nil {
			t.Fatalf("replies = %d, want one ImmediateResponse", len(replies))
		}
		checkError(t, replies[0].GetImmediateResponse(), http.StatusRequestEntityTooLarge, "request_too_large", "")
	})
}

func TestStreamShapes(t *testing.T) {
	h := start(t, Options{})
	trailers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}

	t.Run("body then trailers", func(t *testing.T) {
		in := `{"model":"m"}`
		replies, err := h.run(t, headers(false, duplex), body(in[:5], false), body(in[5:], false), trailers)
		if err != nil {
			t.Fatal(err)
		}
		if replies[len(replies)-1].GetRequestTrailers() == nil {
			t.Fatalf("last reply = %v, want a TrailersResponse", replies[len(replies)-1])
		}
		checkDuplex(t, replies[:len(replies)-1], nil, "m", in, false)
	})

	t.Run("no body", func(t *testing.T) {
		for _, mode := range []filterv3.ProcessingMode_BodySendMode{buffered, duplex} {
			replies, err := h.run(t, headers(true, mode))
			if err != nil || len(replies) != 1 || replies[0].GetRequestHeaders() == nil ||
				replies[0].GetRequestHeaders().GetResponse() != nil {
				t.Errorf("%s: replies %v, err %v; want one empty HeadersResponse", mode, replies, err)
			}
		}
	})

	t.Run("empty body with end_of_stream", func(t *testing.T) {
		replies, err := h.run(t, headers(false, duplex), body("", true))
		checkDuplex(t, replies, err, "", "", true)
	})

	t.Run("response passes through", func(t *testing.T) {
		respHeaders := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: extproc.ResponseHeaderMap(200, http.Header{"Content-Type": {"text/event-stream"}})}}}
		respBody := func(s string, eos bool) *extprocv3.ProcessingRequest {
			return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: []byte(s), EndOfStream: eos}}}
		}
		in := `{"model":"m"}`
		replies, err := h.run(t, headers(false, duplex), body(in, true), respHeaders,
			respBody("data: a\n\n", false), respBody("data: [DONE]\n\n", true))
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 5 {
			t.Fatalf("%d replies, want 5", len(replies))
		}
		if rh := replies[2].GetResponseHeaders(); rh == nil || rh.GetResponse() != nil {
			t.Errorf("response headers reply = %v", replies[2])
		}
		var echoed bytes.Buffer
		for i, r := range replies[3:] {
			sr := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
			if sr == nil || sr.GetEndOfStream() != (i == 1) {
				t.Fatalf("response chunk %d = %v", i, r)
			}
			echoed.Write(sr.GetBody())
		}
		if echoed.String() != "data: a\n\ndata: [DONE]\n\n" {
			t.Errorf("response body = %q", echoed.String())
		}

		replies, err = h.run(t, headers(false, buffered), body(in, true), respHeaders, respBody("{}", true))
		if err != nil || len(replies) != 4 || replies[3].GetResponseBody() == nil ||
			replies[3].GetResponseBody().GetResponse() != nil {
			t.Errorf("buffered response body: replies %v, err %v", replies, err)
		}
	})

	t.Run("STREAMED mode is refused", func(t *testing.T) {
		_, err := h.run(t, headers(false, filterv3.ProcessingMode_STREAMED), body("{}", true))
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("err = %v, want FailedPrecondition", err)
		}
	})
}

func TestMetricsAndHealth(t *testing.T) {
	h := start(t, Options{})
	for _, b := range []string{`{"model":"a"}`, `{"model":"b"}`, `{"model":""}`, `{}`, `{}`, `{"model":null}`, `not json`} {
		if _, err := h.run(t, headers(false, duplex), body(b, true)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(h.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Exact series lines: the exposition format sorts labels, so upstream's names and labels can
	// be compared as text.
	for _, line := range []string{
		"bbr_success_total 2\n",
		`bbr_body_field_empty_total{field="model"} 1` + "\n",
		`bbr_body_field_not_found_total{field="model"} 3` + "\n",
		`bbr_plugin_duration_seconds_count{extension_point="request",plugin_name="body-field-to-header",plugin_type="body-field-to-header"} 7` + "\n",
		`bbr_info{build_ref="`,
	} {
		if !bytes.Contains(page, []byte(line)) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	for _, svc := range []string{"", "envoy.service.ext_proc.v3.ExternalProcessor"} {
		r, err := h.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, r, err)
		}
	}
}

func TestNoGoroutineGrowth(t *testing.T) {
	h := start(t, Options{})
	// Warm the connection so its own goroutines are part of the baseline.
	if _, err := h.run(t, headers(false, duplex), body(`{"model":"m"}`, true)); err != nil {
		t.Fatal(err)
	}
	baseline := goleak.IgnoreCurrent()
	for i := 0; i < 50; i++ {
		msgs := [][]*extprocv3.ProcessingRequest{
			{headers(false, duplex), body(`{"model":"m"}`, true)},
			{headers(false, buffered), body(`{"model"`, true)},
			{headers(false, duplex), body(`{"model":`, false)}, // client goes away mid-body
		}[i%3]
		if _, err := h.run(t, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := goleak.Find(baseline); err != nil {
		t.Errorf("goroutines left after the streams ended: %v", err)
	}
}

func TestSecureServingRefused(t *testing.T) {
	cmd := NewCommand()
	cmd.SetArgs([]string{"--secure-serving", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "secure-serving") {
		t.Errorf("err = %v, want a refusal of --secure-serving", err)
	}
}
