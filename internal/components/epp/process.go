package epp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/decision"
	"github.com/inference-sandbox/sandbox/internal/components/epp/objective"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Protocol names (llm-d-facts §2.2, §2.5).
const (
	// DestinationHeader carries the chosen ip:port (comma list, primary first) to the data plane.
	DestinationHeader = "x-gateway-destination-endpoint"
	// MetadataNamespace is the dynamic-metadata namespace holding the same value, which Envoy's
	// ORIGINAL_DST load balancer reads.
	MetadataNamespace = "envoy.lb"
	// SubsetNamespace and SubsetKey carry the data plane's optional candidate subset.
	SubsetNamespace = "envoy.lb.subset_hint"
	SubsetKey       = "x-gateway-destination-endpoint-subset"

	requestIDHeader    = "x-request-id"
	objectiveHeader    = "x-gateway-inference-objective"
	modelRewriteHeader = "x-gateway-model-name-rewrite"
	// DefaultMaxBodyBytes bounds what one stream buffers; FULL_DUPLEX_STREAMED leaves it to us.
	DefaultMaxBodyBytes = 16 << 20
)

// systemHeaders are the request headers upstream never copies into its header mutation
// (GAIE pkg/epp/util/request/headers.go).
var systemHeaders = map[string]bool{
	"x-gateway-inference-fairness-id":       true,
	objectiveHeader:                         true,
	modelRewriteHeader:                      true,
	SubsetKey:                               true,
	DestinationHeader:                       true,
	"x-gateway-destination-endpoint-served": true,
	"content-length":                        true,
}

// Processor is the ext_proc service: one Process stream per HTTP request.
type Processor struct {
	extprocv3.UnimplementedExternalProcessorServer
	store *datastore.Store
	sched *scheduling.Scheduler
	// detector measures pool saturation for admission; objectives gives request priorities.
	detector   scheduling.SaturationDetector
	objectives objective.Lookup
	metrics    *metrics
	ring       *decision.Ring
	maxBody    int
	log        *slog.Logger
}

// exchange is the state of one stream.
type exchange struct {
	headers      []*corev3.HeaderValue
	path         string
	requestID    string
	generatedID  bool
	rewrite      string
	objective    string
	priority     int
	subset       []string
	subsetGiven  bool
	body         []byte
	requestDone  bool
	model        string
	targetModel  string
	target       *datastore.Endpoint
	started      time.Time
	released     bool
	respStream   bool
	respBody     []byte
	responseDone bool
}

// Process implements extprocv3.ExternalProcessorServer. All sends happen on this goroutine.
func (p *Processor) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	x := &exchange{}
	defer p.release(x)
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receiving from the data plane: %w", err)
		}
		p.readSubset(x, req)
		replies, final := p.handle(ctx, x, req)
		for _, r := range replies {
			if err := stream.Send(r); err != nil {
				return fmt.Errorf("sending to the data plane: %w", err)
			}
		}
		if final {
			return nil
		}
	}
}

func (p *Processor) handle(ctx context.Context, x *exchange, req *extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, bool) {
	switch v := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		p.readHeaders(x, v.RequestHeaders.GetHeaders())
		if v.RequestHeaders.GetEndOfStream() {
			return p.bodyless(x)
		}
		// FULL_DUPLEX_STREAMED: the header reply waits for the whole body (§7 gotcha 2).
		return nil, false

	case *extprocv3.ProcessingRequest_RequestBody:
		if x.requestDone {
			return nil, false
		}
		x.body = append(x.body, v.RequestBody.GetBody()...)
		if len(x.body) > p.maxBody {
			return p.fail(x, badRequest(fmt.Sprintf("request body exceeds %d bytes", p.maxBody)), 0)
		}
		if !v.RequestBody.GetEndOfStream() {
			return nil, false
		}
		return p.schedule(ctx, x, true)

	case *extprocv3.ProcessingRequest_RequestTrailers:
		if x.requestDone {
			return []*extprocv3.ProcessingResponse{extproc.TrailersReply(false)}, false
		}
		// The body ended without end_of_stream because trailers follow: the body is complete now.
		replies, final := p.schedule(ctx, x, false)
		if final {
			return replies, true
		}
		return append(replies, extproc.TrailersReply(false)), false

	case *extprocv3.ProcessingRequest_ResponseHeaders:
		hm := v.ResponseHeaders.GetHeaders()
		ct, _ := extproc.HeaderValue(hm, "content-type")
		x.respStream = strings.Contains(ct, "text/event-stream")
		set := []*corev3.HeaderValueOption{extproc.SetHeader("x-went-into-resp-headers", "true")}
		for _, h := range hm.GetHeaders() {
			if !strings.HasPrefix(h.GetKey(), ":") {
				set = append(set, &corev3.HeaderValueOption{Header: h,
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
			}
		}
		if v.ResponseHeaders.GetEndOfStream() {
			p.release(x)
		}
		return []*extprocv3.ProcessingResponse{extproc.HeadersReply(true, &extprocv3.HeaderMutation{SetHeaders: set})}, false

	case *extprocv3.ProcessingRequest_ResponseBody:
		b := v.ResponseBody
		if x.respStream {
			// Server-sent events go back chunk by chunk so that time to first token is not
			// held up by the picker.
			if b.GetEndOfStream() {
				p.release(x)
			}
			return extproc.StreamedBody(true, b.GetBody(), b.GetEndOfStream()), false
		}
		x.respBody = append(x.respBody, b.GetBody()...)
		if !b.GetEndOfStream() {
			return nil, false
		}
		p.release(x)
		out := extproc.StreamedBody(true, x.respBody, true)
		x.respBody = nil
		return out, false

	case *extprocv3.ProcessingRequest_ResponseTrailers:
		var out []*extprocv3.ProcessingResponse
		if !x.respStream && x.respBody != nil {
			out = extproc.StreamedBody(true, x.respBody, false)
			x.respBody = nil
		}
		p.release(x)
		return append(out, extproc.TrailersReply(true)), false
	}
	return nil, false
}

func (p *Processor) readHeaders(x *exchange, hm *corev3.HeaderMap) {
	x.headers = hm.GetHeaders()
	x.started = time.Now()
	for _, h := range x.headers {
		switch strings.ToLower(h.GetKey()) {
		case ":path":
			x.path = headerText(h)
		case requestIDHeader:
			x.requestID = headerText(h)
		case modelRewriteHeader:
			x.rewrite = headerText(h)
		case objectiveHeader:
			x.objective = headerText(h)
		}
	}
	if x.requestID == "" {
		x.requestID = uuid.NewString()
		x.generatedID = true
	}
}

func headerText(h *corev3.HeaderValue) string {
	if raw := h.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return h.GetValue()
}

// readSubset notes the data plane's endpoint subset hint, wherever in the stream it arrives.
func (p *Processor) readSubset(x *exchange, req *extprocv3.ProcessingRequest) {
	ns, ok := req.GetMetadataContext().GetFilterMetadata()[SubsetNamespace]
	if !ok {
		return
	}
	v, ok := ns.GetFields()[SubsetKey]
	if !ok {
		return
	}
	x.subsetGiven = true
	x.subset = x.subset[:0]
	for _, e := range v.GetListValue().GetValues() {
		x.subset = append(x.subset, e.GetStringValue())
	}
}

// candidates returns the pool's endpoints, narrowed to the subset hint when one was given.
func (p *Processor) candidates(x *exchange) []*datastore.Endpoint {
	all := p.store.Endpoints()
	if !x.subsetGiven {
		return all
	}
	var out []*datastore.Endpoint
	for _, e := range all {
		for _, s := range x.subset {
			if s == e.Address {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// bodyless routes a request without a body (e.g. GET /v1/models) to a random endpoint without
// scoring, as upstream does; no endpoint at all is upstream's Internal (500).
func (p *Processor) bodyless(x *exchange) ([]*extprocv3.ProcessingResponse, bool) {
	x.requestDone = true
	cands := p.candidates(x)
	if len(cands) == 0 {
		return p.fail(x, &reqError{status: http.StatusInternalServerError, code: codeInternal,
			msg: "no endpoints available for a request without a body"}, 0)
	}
	target := cands[rand.IntN(len(cands))]
	p.hold(x, target)
	p.ring.Add(&decision.Record{Time: time.Now(), RequestID: x.requestID, Status: "success", Bodyless: true,
		Endpoint: target.Address, Name: target.Name})
	return []*extprocv3.ProcessingResponse{p.headersReply(x, target.Address, -1)}, false
}

// schedule runs on the complete request body: parse, pick, then answer headers and body.
func (p *Processor) schedule(ctx context.Context, x *exchange, endOfStream bool) ([]*extprocv3.ProcessingResponse, bool) {
	x.requestDone = true
	pb, rerr := parseBody(x.path, x.body, x.rewrite)
	x.body = nil
	if rerr != nil {
		return p.fail(x, rerr, 0)
	}
	x.model, x.targetModel = pb.model, pb.targetModel
	cands := p.candidates(x)
	if len(cands) == 0 {
		return p.fail(x, schedulingError(scheduling.ErrNoEndpoints), 0)
	}
	if rerr := p.admit(ctx, x, cands); rerr != nil {
		return p.fail(x, rerr, 0)
	}
	req := &scheduling.Request{ID: x.requestID, Model: pb.model, TargetModel: pb.targetModel,
		Prompt: pb.prompt, CacheSalt: pb.salt, Headers: p.headerMap(x)}
	start := time.Now()
	res, err := p.sched.Schedule(ctx, req, cands)
	took := time.Since(start)
	if err != nil {
		p.metrics.schedAttempts.WithLabelValues("failure", pb.targetModel, "", "", "").Inc()
		return p.fail(x, schedulingError(err), took)
	}
	p.metrics.schedE2E.Observe(took.Seconds())
	target := res.Targets[0]
	p.metrics.schedAttempts.WithLabelValues("success", pb.targetModel, podName(target), target.Namespace, target.Port).Inc()
	p.metrics.requestTotal.WithLabelValues(pb.model, pb.targetModel, strconv.Itoa(x.priority)).Inc()
	if pf := res.State.Prefix; pf.Valid && pf.TotalBlocks > 0 {
		p.metrics.prefixHitRatio.Observe(float64(pf.MatchedBlocks) / float64(pf.TotalBlocks))
		p.metrics.prefixHitBytes.Observe(float64(pf.MatchedBlocks * pf.BlockSize))
	}
	p.hold(x, target)
	p.ring.Add(&decision.Record{Time: start, RequestID: x.requestID, Model: pb.model, TargetModel: pb.targetModel,
		Status: "success", Duration: took, Endpoint: target.Address, Name: target.Name, Result: res})

	dest := target.Address
	if len(res.Targets) > 1 {
		addrs := make([]string, len(res.Targets))
		for i, t := range res.Targets {
			addrs[i] = t.Address
		}
		dest = strings.Join(addrs, ",")
	}
	out := make([]*extprocv3.ProcessingResponse, 0, 2)
	out = append(out, p.headersReply(x, dest, len(pb.out)))
	return append(out, extproc.StreamedBody(false, pb.out, endOfStream)...), false
}

// admit is upstream's admission without flow control (llm-d-facts §2.8): the request's priority
// is that of the InferenceObjective its x-gateway-inference-objective header names (0 when it
// names none or an unknown one); a sheddable request (priority < 0) is rejected with 429 while
// the candidates' saturation is at least 1, every other request passes.
func (p *Processor) admit(ctx context.Context, x *exchange, cands []*datastore.Endpoint) *reqError {
	x.priority = 0
	if x.objective != "" && p.objectives != nil {
		if prio, ok := p.objectives.Priority(x.objective); ok {
			x.priority = prio
		}
	}
	if x.priority >= 0 || p.detector == nil {
		return nil
	}
	sat := p.detector.Saturation(ctx, cands)
	if sat < 1 {
		return nil
	}
	return &reqError{status: http.StatusTooManyRequests, code: codeResourceExhausted,
		msg: fmt.Sprintf("pool saturated (%.2f of capacity); request of objective %q with priority %d shed",
			sat, x.objective, x.priority)}
}

// headersReply is the request-headers answer: destination header and dynamic metadata, the new
// Content-Length (unless bodyLen < 0), and the incoming headers re-set, as upstream sends them.
func (p *Processor) headersReply(x *exchange, dest string, bodyLen int) *extprocv3.ProcessingResponse {
	set := make([]*corev3.HeaderValueOption, 0, len(x.headers)+3)
	set = append(set, extproc.SetHeader(DestinationHeader, dest))
	if bodyLen >= 0 {
		set = append(set, extproc.SetHeader("Content-Length", strconv.Itoa(bodyLen)))
	}
	if x.generatedID {
		set = append(set, extproc.SetHeader(requestIDHeader, x.requestID))
	}
	for _, h := range x.headers {
		if !systemHeaders[strings.ToLower(h.GetKey())] {
			set = append(set, &corev3.HeaderValueOption{Header: h,
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
		}
	}
	r := extproc.HeadersReply(false, &extprocv3.HeaderMutation{SetHeaders: set})
	r.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
		MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			DestinationHeader: structpb.NewStringValue(dest),
		}}),
	}}
	return r
}

// headerMap gives filters the request headers by lower-case name.
func (p *Processor) headerMap(x *exchange) map[string]string {
	m := make(map[string]string, len(x.headers))
	for _, h := range x.headers {
		m[strings.ToLower(h.GetKey())] = headerText(h)
	}
	return m
}

func podName(e *datastore.Endpoint) string {
	if e.PodName != "" {
		return e.PodName
	}
	return e.Name
}

// fail answers with an ImmediateResponse, which ends the stream.
func (p *Processor) fail(x *exchange, e *reqError, took time.Duration) ([]*extprocv3.ProcessingResponse, bool) {
	p.metrics.requestErrors.WithLabelValues(x.model, x.targetModel, e.code).Inc()
	p.ring.Add(&decision.Record{Time: time.Now(), RequestID: x.requestID, Model: x.model, TargetModel: x.targetModel,
		Status: e.code, HTTPStatus: e.status, Error: e.msg, Duration: took})
	p.log.Debug("request rejected", "requestId", x.requestID, "status", e.status, "error", e.Error())
	return []*extprocv3.ProcessingResponse{e.response()}, true
}

// hold counts the request against its endpoint until the response ends or the stream closes.
func (p *Processor) hold(x *exchange, target *datastore.Endpoint) {
	x.target = target
	target.AddInFlight(1)
	p.metrics.running.WithLabelValues(x.model).Inc()
}

func (p *Processor) release(x *exchange) {
	if x.target == nil || x.released {
		return
	}
	x.released = true
	x.target.AddInFlight(-1)
	p.metrics.running.WithLabelValues(x.model).Dec()
	if x.model != "" {
		p.metrics.requestDuration.WithLabelValues(x.model, x.targetModel).Observe(time.Since(x.started).Seconds())
	}
}
