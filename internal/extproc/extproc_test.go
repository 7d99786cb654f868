package extproc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

func TestHeaderValuePrefersRawValueAndIgnoresCase(t *testing.T) {
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-a", Value: "string-form"},
		{Key: "x-b", Value: "ignored", RawValue: []byte("raw-form")},
		{Key: "x-b", RawValue: []byte("second")},
	}}
	if v, ok := HeaderValue(hm, "X-A"); !ok || v != "string-form" {
		t.Errorf("x-a = %q, %v", v, ok)
	}
	if v, ok := HeaderValue(hm, "x-b"); !ok || v != "raw-form" {
		t.Errorf("x-b = %q, %v; want the first entry's raw_value", v, ok)
	}
	if _, ok := HeaderValue(hm, "x-missing"); ok {
		t.Error("x-missing reported present")
	}
	if _, ok := HeaderValue(nil, "x-a"); ok {
		t.Error("nil map reported a header")
	}
}

func TestRequestHeaderMap(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://models.gw.example.com/v1/chat/completions?x=1", nil)
	r.Header.Add("Authorization", "Bearer k")
	r.Header.Add("X-Multi", "1")
	r.Header.Add("X-Multi", "2")
	hm := RequestHeaderMap(r)
	for name, want := range map[string]string{
		":method": "POST", ":path": "/v1/chat/completions?x=1", ":authority": "models.gw.example.com",
		":scheme": "http", "authorization": "Bearer k",
	} {
		if got, _ := HeaderValue(hm, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var multi int
	for _, h := range hm.Headers {
		if h.Key != string(bytes.ToLower([]byte(h.Key))) {
			t.Errorf("key %q is not lower case", h.Key)
		}
		if h.Key == "x-multi" {
			multi++
		}
	}
	if multi != 2 {
		t.Errorf("x-multi entries = %d, want one per value", multi)
	}
	if got, _ := HeaderValue(ResponseHeaderMap(404, http.Header{"A": {"b"}}), ":status"); got != "404" {
		t.Errorf(":status = %q", got)
	}
}

func TestApplyHeaderMutation(t *testing.T) {
	h := http.Header{"Keep": {"1"}, "Gone": {"x"}, "Overwrite": {"old"}, "Appendme": {"a"}, "Host": {"h"}}
	m := &extprocv3.HeaderMutation{
		RemoveHeaders: []string{"gone", "host", ":path"},
		SetHeaders: []*corev3.HeaderValueOption{
			SetHeader("overwrite", "new"),
			{Header: &corev3.HeaderValue{Key: "appendme", Value: "b"}, Append: wrapperspb.Bool(true)},
			{Header: &corev3.HeaderValue{Key: "unset-action", Value: "v"}},
			{Header: &corev3.HeaderValue{Key: "keep", Value: "2"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
			{Header: &corev3.HeaderValue{Key: "absent", Value: "2"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
			{Header: &corev3.HeaderValue{Key: "empty", Value: ""}},
			{Header: &corev3.HeaderValue{Key: "kept-empty", Value: ""}, KeepEmptyValue: true},
			SetHeader(":authority", "evil"),
			SetHeader("x-envoy-original-path", "/evil"),
		},
	}
	if err := ApplyHeaderMutation(h, m); err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Keep": {"1"}, "Overwrite": {"new"}, "Appendme": {"a", "b"}, "Unset-Action": {"v"},
		"Host": {"h"}, "Kept-Empty": {""},
	}
	if len(h) != len(want) {
		t.Errorf("headers = %v, want %v", h, want)
	}
	for k, vs := range want {
		if got := h.Values(k); len(got) != len(vs) || (len(vs) > 0 && got[len(got)-1] != vs[len(vs)-1]) {
			t.Errorf("%s = %v, want %v", k, got, vs)
		}
	}

	bad := SetHeaders("x-model", "a\nb")
	if err := ApplyHeaderMutation(http.Header{}, bad); err == nil {
		t.Error("a value with a newline was accepted")
	}
}

func TestImmediateError(t *testing.T) {
	env := openai.NewError("bad body", "invalid_request_error", "invalid_request_body")
	resp := ImmediateError(400, "bbr", env).GetImmediateResponse()
	if resp == nil || resp.GetStatus().GetCode() != 400 {
		t.Fatalf("status = %v", resp.GetStatus())
	}
	h := http.Header{}
	if err := ApplyHeaderMutation(h, resp.GetHeaders()); err != nil {
		t.Fatal(err)
	}
	if h.Get("Content-Type") != "application/json" || h.Get(openai.ErrorSourceHeader) != "bbr" {
		t.Errorf("headers = %v", h)
	}
	var got openai.ErrorEnvelope
	if err := json.Unmarshal(resp.GetBody(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Error.Code != "invalid_request_body" || got.Error.Message != "bad body" {
		t.Errorf("body = %s", resp.GetBody())
	}
}

func TestDeniedAndAllowed(t *testing.T) {
	d := Denied(codes.Unauthenticated, 401, "ext_authz", openai.NewError("no", "invalid_request_error", "invalid_api_key"))
	if d.GetStatus().GetCode() != int32(codes.Unauthenticated) || d.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("denied = %v", d)
	}
	if !json.Valid([]byte(d.GetDeniedResponse().GetBody())) {
		t.Errorf("body is not JSON: %q", d.GetDeniedResponse().GetBody())
	}
	a := Allowed()
	if a.GetStatus().GetCode() != 0 || a.GetOkResponse() == nil {
		t.Errorf("allowed = %v", a)
	}
}

func TestReplies(t *testing.T) {
	m := SetHeaders("x-gateway-model-name", "m")
	if c := HeadersReply(false, m).GetRequestHeaders().GetResponse(); !c.GetClearRouteCache() || c.GetHeaderMutation() != m {
		t.Errorf("request headers reply = %v", c)
	}
	if c := HeadersReply(true, m).GetResponseHeaders().GetResponse(); c.GetClearRouteCache() {
		t.Error("response-side reply asks to clear the route cache")
	}
	if r := HeadersReply(false, nil).GetRequestHeaders(); r == nil || r.GetResponse() != nil {
		t.Errorf("pass-through reply = %v", r)
	}
	if BodyReply(false, m).GetRequestBody().GetResponse().GetHeaderMutation() != m {
		t.Error("body reply lost its mutation")
	}
	if BodyReply(true, nil).GetResponseBody() == nil || TrailersReply(false).GetRequestTrailers() == nil ||
		TrailersReply(true).GetResponseTrailers() == nil {
		t.Error("wrong oneof")
	}
}

func TestStreamedBody(t *testing.T) {
	for _, tc := range []struct {
		size, chunks int
		eos          bool
	}{{0, 1, true}, {1, 1, true}, {MaxChunk, 1, true}, {MaxChunk + 1, 2, true}, {3*MaxChunk + 5, 4, false}} {
		body := bytes.Repeat([]byte("x"), tc.size)
		out := StreamedBody(false, body, tc.eos)
		if len(out) != tc.chunks {
			t.Fatalf("size %d: %d chunks, want %d", tc.size, len(out), tc.chunks)
		}
		var joined []byte
		for i, r := range out {
			sr := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
			if len(sr.GetBody()) > MaxChunk {
				t.Errorf("chunk %d has %d bytes", i, len(sr.GetBody()))
			}
			if want := i == len(out)-1 && tc.eos; sr.GetEndOfStream() != want {
				t.Errorf("size %d chunk %d: end_of_stream = %v", tc.size, i, sr.GetEndOfStream())
			}
			joined = append(joined, sr.GetBody()...)
		}
		if !bytes.Equal(joined, body) {
			t.Errorf("size %d: reassembled body differs", tc.size)
		}
	}
	if StreamedBody(true, []byte("x"), true)[0].GetResponseBody() == nil {
		t.Error("response-side chunks use the wrong oneof")
	}
}
