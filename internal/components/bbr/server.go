// Package bbr is the offline body-based router: an Envoy ext_proc server that reads the OpenAI
// request body and copies its "model" into the X-Gateway-Model-Name request header, so that
// ordinary HTTPRoute header matches can pick the model's InferencePool. It answers the way
// upstream BBR (Gateway API Inference Extension v1.5) does, see ../shared/facts/llm-d-facts.md §3.
package bbr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

const (
	// ModelHeader is the request header BBR sets; HTTPRoutes match on it.
	ModelHeader = "X-Gateway-Model-Name"
	// errorSource names BBR in x-kaito-error-source.
	errorSource = "bbr"
	// DefaultMaxBodyBytes bounds what one stream may buffer. In FULL_DUPLEX_STREAMED mode nothing
	// else does, and the simulator's own limit is 4 MiB (llm-d-facts §1.1).
	DefaultMaxBodyBytes = 16 << 20
)

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	streaming    bool
	maxBodyBytes int
	metrics      *metrics
}

// NewServer returns a BBR ext_proc server. streaming selects FULL_DUPLEX_STREAMED handling for
// data planes that do not announce their processing mode (protocol_config, sent by newer Envoys
// and by the sandbox gateway, wins when present).
func NewServer(streaming bool, maxBodyBytes int, m *metrics) *Server {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	return &Server{streaming: streaming, maxBodyBytes: maxBodyBytes, metrics: m}
}

// exchange is the state of one ext_proc stream, i.e. one HTTP request.
type exchange struct {
	duplexRequest  bool // request body arrives FULL_DUPLEX_STREAMED: buffer, answer at the end
	duplexResponse bool // response body arrives FULL_DUPLEX_STREAMED: echo every chunk
	headersPending bool // request headers are waiting for the body before they are answered
	body           []byte
}

// Process handles one HTTP request's ext_proc stream. All sends happen on this goroutine, so a
// stream owns no other goroutine and nothing outlives it.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	x := &exchange{duplexRequest: s.streaming, duplexResponse: s.streaming}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receiving from the data plane: %w", err)
		}
		if pc := req.GetProtocolConfig(); pc != nil {
			if err := x.configure(pc); err != nil {
				return err
			}
		}
		replies, final := s.handle(x, req)
		for _, r := range replies {
			if err := stream.Send(r); err != nil {
				return fmt.Errorf("sending to the data plane: %w", err)
			}
		}
		if final {
			// An ImmediateResponse ends the HTTP request; nothing more will come that needs an answer.
			return nil
		}
	}
}

// configure applies the body modes the data plane announced in its first message.
func (x *exchange) configure(pc *extprocv3.ProtocolConfiguration) error {
	if pc.GetRequestBodyMode() == filterv3.ProcessingMode_STREAMED {
		// Every STREAMED chunk needs its own answer before the next one, but the header can only be
		// set once the whole body has been read: no correct answer exists.
		return status.Error(codes.FailedPrecondition,
			"request_body_mode STREAMED is not supported; use BUFFERED or FULL_DUPLEX_STREAMED")
	}
	x.duplexRequest = pc.GetRequestBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	x.duplexResponse = pc.GetResponseBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	return nil
}

// handle returns the replies to one message and whether they end the stream.
func (s *Server) handle(x *exchange, req *extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, bool) {
	switch v := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if x.duplexRequest && !v.RequestHeaders.GetEndOfStream() {
			// Upstream answers the headers only once the body is known, with the model header in
			// that very reply.
			x.headersPending = true
			return nil, false
		}
		return one(extproc.HeadersReply(false, nil)), false

	case *extprocv3.ProcessingRequest_RequestBody:
		x.body = append(x.body, v.RequestBody.GetBody()...)
		if len(x.body) > s.maxBodyBytes {
			return one(tooLarge(s.maxBodyBytes)), true
		}
		if x.duplexRequest && !v.RequestBody.GetEndOfStream() {
			return nil, false
		}
		// Outside FULL_DUPLEX the body comes in one message; a BUFFERED_PARTIAL body cut at the
		// buffer limit is routed on what arrived.
		return s.route(x, true)

	case *extprocv3.ProcessingRequest_RequestTrailers:
		var replies []*extprocv3.ProcessingResponse
		final := false
		if x.headersPending {
			// The body ended without end_of_stream because trailers follow: route now, and leave the
			// end of the stream to the trailers.
			replies, final = s.route(x, false)
		}
		if final {
			return replies, true
		}
		return append(replies, extproc.TrailersReply(false)), false

	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return one(extproc.HeadersReply(true, nil)), false

	case *extprocv3.ProcessingRequest_ResponseBody:
		// Responses pass through. In FULL_DUPLEX each chunk is echoed at once instead of buffered
		// as upstream does, so streamed tokens are not held back until the response ends.
		if x.duplexResponse {
			return extproc.StreamedBody(true, v.ResponseBody.GetBody(), v.ResponseBody.GetEndOfStream()), false
		}
		return one(extproc.BodyReply(true, nil)), false

	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return one(extproc.TrailersReply(true)), false
	}
	// A message with no request set carries nothing to answer (e.g. only attributes).
	return nil, false
}

// route decides on the buffered body: the header mutation, then (FULL_DUPLEX) the body itself.
func (s *Server) route(x *exchange, endOfStream bool) ([]*extprocv3.ProcessingResponse, bool) {
	start := time.Now()
	model, err := s.modelOf(x.body)
	s.metrics.observe(start)
	if err != nil {
		return one(badRequest(err)), true
	}
	var m *extprocv3.HeaderMutation
	if model != "" {
		m = extproc.SetHeaders(ModelHeader, model)
		s.metrics.success.Inc()
	}
	if !x.duplexRequest {
		return one(extproc.BodyReply(false, m)), false
	}
	x.headersPending = false
	replies := append(one(extproc.HeadersReply(false, m)), extproc.StreamedBody(false, x.body, endOfStream)...)
	x.body = nil
	return replies, false
}

// requestError is a client mistake in the body; param names the offending field, if any.
type requestError struct {
	msg   string
	param string
}

func (e *requestError) Error() string { return e.msg }

// modelOf returns the body's model, or "" when the request should pass on without a model
// header (no body, no or null "model", empty "model"; the catch-all route answers those).
//
// Only the top-level "model" key counts, matched case-sensitively, as upstream reads it from a
// decoded map. A model that is not a string is rejected: upstream v1.0 failed the stream on it
// (500) and v1.5 routes on its Go %v rendering, neither of which gives the client a useful error.
func (s *Server) modelOf(body []byte) (string, error) {
	if len(body) == 0 {
		s.metrics.notFound.WithLabelValues(modelField).Inc()
		return "", nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		// Upstream v1.5's wording for the same failure.
		return "", &requestError{msg: "failed to parse request body: " + err.Error()}
	}
	raw, ok := fields[modelField]
	if !ok || string(raw) == "null" {
		s.metrics.notFound.WithLabelValues(modelField).Inc()
		return "", nil
	}
	var model string
	if err := json.Unmarshal(raw, &model); err != nil {
		return "", &requestError{msg: `The "model" field must be a string.`, param: modelField}
	}
	if model == "" {
		s.metrics.empty.WithLabelValues(modelField).Inc()
		return "", nil
	}
	if !httpguts.ValidHeaderFieldValue(model) {
		return "", &requestError{msg: `The "model" field contains characters that cannot be routed on.`, param: modelField}
	}
	return model, nil
}

func badRequest(err error) *extprocv3.ProcessingResponse {
	env := openai.NewError(err.Error(), "invalid_request_error", "invalid_request_body")
	var re *requestError
	if errors.As(err, &re) && re.param != "" {
		env.Error.Param = &re.param
	}
	return extproc.ImmediateError(http.StatusBadRequest, errorSource, env)
}

func tooLarge(limit int) *extprocv3.ProcessingResponse {
	env := openai.NewError(fmt.Sprintf("The request body is larger than %d bytes.", limit),
		"invalid_request_error", "request_too_large")
	return extproc.ImmediateError(http.StatusRequestEntityTooLarge, errorSource, env)
}

func one(r *extprocv3.ProcessingResponse) []*extprocv3.ProcessingResponse {
	return []*extprocv3.ProcessingResponse{r}
}
