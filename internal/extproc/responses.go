package extproc

import (
	"encoding/json"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// MaxChunk is the largest body chunk a processor sends back in FULL_DUPLEX_STREAMED mode. Envoy
// recommends at most 64 KiB per message; upstream BBR and EPP cut at 62,000 bytes
// (../shared/facts/llm-d-facts.md §3, §7.3), and so do we.
const MaxChunk = 62000

// ErrorBody renders an OpenAI error envelope as JSON.
func ErrorBody(env openai.ErrorEnvelope) []byte {
	// Only strings, a *string and a string-or-int code: Marshal cannot fail.
	b, _ := json.Marshal(env)
	return b
}

// ErrorHeaders are the headers every error reply carries: a JSON content type and the
// x-kaito-error-source naming the component that answered, followed by extra key/value pairs.
func ErrorHeaders(source string, kv ...string) []*corev3.HeaderValueOption {
	opts := []*corev3.HeaderValueOption{SetHeader("content-type", "application/json")}
	if source != "" {
		opts = append(opts, SetHeader(openai.ErrorSourceHeader, source))
	}
	return append(opts, SetHeaders(kv...).SetHeaders...)
}

// ImmediateError is an ext_proc reply that ends the request with an OpenAI-shaped JSON error.
// Envoy labels an ImmediateResponse body text/plain unless a content type is set, hence the
// explicit header.
func ImmediateError(status int, source string, env openai.ErrorEnvelope) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: ErrorHeaders(source)},
			Body:    ErrorBody(env),
		},
	}}
}

// Allowed is the ext_authz answer that lets a request through unchanged.
func Allowed() *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
}

// Denied is the ext_authz answer that rejects a request with an HTTP status and an OpenAI JSON
// body. code is the gRPC status the data plane sees (any non-OK code denies); httpStatus is what
// the client sees, because without a DeniedHttpResponse status Envoy answers 403.
func Denied(code codes.Code, httpStatus int, source string, env openai.ErrorEnvelope) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: env.Error.Message},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: ErrorHeaders(source),
			Body:    string(ErrorBody(env)),
		}},
	}
}

// HeadersReply answers a request_headers (or, with response set, response_headers) message. A
// nil mutation passes the headers on untouched; a non-nil one on the request side also clears the
// route cache so the data plane re-matches routes on the new headers (BBR's X-Gateway-Model-Name,
// llm-d-facts §3). Envoy only honours clear_route_cache in the request direction.
func HeadersReply(response bool, m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: common(response, m)}
	if response {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}}
}

// BodyReply answers a buffered body message without replacing the body; m is as in HeadersReply.
func BodyReply(response bool, m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return bodyResponse(response, common(response, m))
}

// TrailersReply answers a trailers message without changing the trailers.
func TrailersReply(response bool) *extprocv3.ProcessingResponse {
	if response {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
}

func common(response bool, m *extprocv3.HeaderMutation) *extprocv3.CommonResponse {
	if m == nil {
		return nil
	}
	return &extprocv3.CommonResponse{HeaderMutation: m, ClearRouteCache: !response}
}

// StreamedBody splits body into FULL_DUPLEX_STREAMED body replies of at most MaxChunk bytes. The
// last one carries endOfStream; a request that ends with trailers passes false. An empty body
// still yields one reply so that the data plane learns where the body ends.
func StreamedBody(response bool, body []byte, endOfStream bool) []*extprocv3.ProcessingResponse {
	var out []*extprocv3.ProcessingResponse
	for {
		n := min(len(body), MaxChunk)
		last := n == len(body)
		out = append(out, bodyResponse(response, &extprocv3.CommonResponse{
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
				StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body[:n], EndOfStream: last && endOfStream},
			}},
		}))
		body = body[n:]
		if last {
			return out
		}
	}
}

func bodyResponse(response bool, c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: c}
	if response {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
}
