package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/authz"
	"github.com/inference-sandbox/sandbox/internal/components/bbr"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// The component tests run the gateway as in the cluster, on loopback: the real authz and BBR
// gRPC servers, real simulators, and a scripted endpoint picker that speaks ext_proc
// FULL_DUPLEX_STREAMED like upstream's EPP.

const (
	testNamespace = "models"
	testKey       = "sk-models-key"
	foreignKey    = "sk-other-namespace-key"
)

var testGateway = types.NamespacedName{Namespace: testNamespace, Name: "models-gw"}

// pickerMode scripts how the picker answers once it has the whole request.
type pickerMode int32

const (
	pickNormally pickerMode = iota
	pickGRPCError
	pickImmediate429
	pickImmediate503
	pickHang
	pickNoDestination
	// pickMetadataOnly names the endpoint only in the envoy.lb dynamic metadata.
	pickMetadataOnly
)

// scriptedPicker is an ext_proc endpoint picker: it buffers the body until end_of_stream, then
// answers the headers with x-gateway-destination-endpoint (round robin) and sends the body back
// as streamed_response chunks; responses are echoed chunk by chunk.
type scriptedPicker struct {
	extprocv3.UnimplementedExternalProcessorServer
	endpoints []string
	mode      atomic.Int32
	next      atomic.Uint64
	open      atomic.Int64 // streams in progress
	picked    atomic.Int64
	// chunksBeforeAnswer counts body messages received before the header reply was sent; a
	// gateway that waited for the reply first would deadlock instead.
	chunksBeforeAnswer atomic.Int64
	sawResponse        atomic.Int64
	sawServed          atomic.Int64
}

func (p *scriptedPicker) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	p.open.Add(1)
	defer p.open.Add(-1)
	var body []byte
	var chunks int64
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if v.RequestHeaders.GetEndOfStream() {
				if err := p.answer(stream, nil, false); err != nil {
					return err
				}
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			chunks++
			body = append(body, v.RequestBody.GetBody()...)
			if v.RequestBody.GetEndOfStream() {
				p.chunksBeforeAnswer.Add(chunks)
				if err := p.answer(stream, body, true); err != nil {
					return err
				}
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			p.sawResponse.Add(1)
			if lb := req.GetMetadataContext().GetFilterMetadata()["envoy.lb"]; lb.GetFields()[servedKey].GetStringValue() != "" {
				p.sawServed.Add(1)
			}
			if err := stream.Send(extproc.HeadersReply(true, extproc.SetHeaders("x-went-into-resp-headers", "true"))); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			for _, r := range extproc.StreamedBody(true, v.ResponseBody.GetBody(), v.ResponseBody.GetEndOfStream()) {
				if err := stream.Send(r); err != nil {
					return err
				}
			}
		}
	}
}

func (p *scriptedPicker) answer(stream extprocv3.ExternalProcessor_ProcessServer, body []byte, hasBody bool) error {
	switch pickerMode(p.mode.Load()) {
	case pickGRPCError:
		return status.Error(codes.Internal, "scripted failure")
	case pickImmediate429:
		return stream.Send(extproc.ImmediateError(429, "epp", openai.NewError("inference error: ResourceExhausted", "rate_limit_error", "too_many_requests")))
	case pickImmediate503:
		return stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
			ImmediateResponse: &extprocv3.ImmediateResponse{Status: statusOf(503), Body: []byte("inference error: ServiceUnavailable - no endpoints")},
		}})
	case pickHang:
		<-stream.Context().Done()
		return nil
	case pickNoDestination:
		return stream.Send(extproc.HeadersReply(false, extproc.SetHeaders("x-something", "else")))
	}
	dest := p.endpoints[p.next.Add(1)%uint64(len(p.endpoints))]
	p.picked.Add(1)
	reply := extproc.HeadersReply(false, extproc.SetHeaders(destinationHeader, dest, "content-length", fmt.Sprint(len(body))))
	if pickerMode(p.mode.Load()) == pickMetadataOnly {
		reply = extproc.HeadersReply(false, extproc.SetHeaders("x-unrelated", "1"))
		md, err := structpb.NewStruct(map[string]any{"envoy.lb": map[string]any{destinationHeader: dest}})
		if err != nil {
			return err
		}
		reply.DynamicMetadata = md
	}
	if err := stream.Send(reply); err != nil {
		return err
	}
	if !hasBody {
		return nil
	}
	for _, r := range extproc.StreamedBody(false, body, true) {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	return nil
}

// testModel is one model: its simulators and its pool's picker.
type testModel struct {
	name   string
	sims   []*sim.Server
	urls   []string // simulator base URLs
	addrs  []string // simulator host:port
	picker *scriptedPicker
	// pickerAddr is where the picker listens; it may be pointed elsewhere to simulate an outage.
	pickerAddr string
}

type stack struct {
	t      testing.TB
	models map[string]*testModel
	table  *routing.Static
	in     routing.Input
	gw     *httptest.Server
	server *Server
	// authzAddr, bbrAddr are the filters' gRPC addresses.
	authzAddr, bbrAddr string
}

type stackOptions struct {
	simsPerModel int
	simConfig    func(*sim.Config)
	failOpen     bool
	gateway      func(*Config)
}

// newStack starts authz, BBR, simulators, one picker per model and the gateway.
func newStack(t testing.TB, o stackOptions, models ...string) *stack {
	t.Helper()
	if o.simsPerModel == 0 {
		o.simsPerModel = 2
	}
	s := &stack{t: t, models: map[string]*testModel{}}

	authzLn := extproctest.Listen(t)
	keys := authz.StaticKeys{testNamespace: testKey, "other": foreignKey}
	extproctest.Run(t, func(ctx context.Context) error { return authz.Serve(ctx, authzLn, keys, nil) })
	s.authzAddr = authzLn.Addr().String()

	bbrLn, bbrHealth, bbrMetrics := extproctest.Listen(t), extproctest.Listen(t), extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error {
		return bbr.Serve(ctx, bbr.Options{Streaming: true, MaxBodyBytes: bbr.DefaultMaxBodyBytes}, bbrLn, bbrHealth, bbrMetrics)
	})
	s.bbrAddr = bbrLn.Addr().String()

	for _, name := range models {
		m := &testModel{name: name}
		for i := range o.simsPerModel {
			cfg := sim.DefaultConfig()
			cfg.Model, cfg.Seed, cfg.MaxNumSeqs = name, int64(i+1), 64
			if o.simConfig != nil {
				o.simConfig(&cfg)
			}
			pod := fmt.Sprintf("%s-pod-%d", name, i)
			sv, err := sim.New(cfg, func(k string) string {
				if k == "POD_NAME" {
					return pod
				}
				return ""
			})
			if err != nil {
				t.Fatalf("simulator: %v", err)
			}
			ts := httptest.NewServer(sv)
			t.Cleanup(ts.Close)
			m.sims = append(m.sims, sv)
			m.urls = append(m.urls, ts.URL)
			m.addrs = append(m.addrs, strings.TrimPrefix(ts.URL, "http://"))
		}
		m.picker = &scriptedPicker{endpoints: m.addrs}
		ln := extproctest.Listen(t)
		srv := grpc.NewServer(extproc.ServerOptions()...)
		extprocv3.RegisterExternalProcessorServer(srv, m.picker)
		extproctest.Run(t, func(ctx context.Context) error { return extproc.ServeGRPC(ctx, srv, ln) })
		m.pickerAddr = ln.Addr().String()
		s.models[name] = m
	}

	s.in = routing.Input{Gateway: testGateway, Pools: map[types.NamespacedName]routing.Pool{}, Services: map[types.NamespacedName]routing.Service{}}
	for _, name := range models {
		s.addModelRoute(name, o.failOpen)
	}
	s.table = routing.NewStatic(s.in)

	cfg := Config{
		Gateway: testGateway, AuthzAddress: s.authzAddr, BBRAddress: s.bbrAddr,
		PickerTimeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	if o.gateway != nil {
		o.gateway(&cfg)
	}
	gs, err := New(cfg, s.table)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	s.server = gs
	s.gw = httptest.NewServer(gs)
	t.Cleanup(func() {
		s.gw.Close()
		gs.Close()
	})
	return s
}

// addModelRoute adds the objects a modeldeployment renders: InferencePool <m>-inferencepool and
// HTTPRoute <m>-route matching X-Gateway-Model-Name: <m> (upstream-production-stack §5.4).
func (s *stack) addModelRoute(name string, failOpen bool) {
	m := s.models[name]
	pool := routing.Pool{Namespace: testNamespace, Name: name + "-inferencepool", Endpoints: m.addrs,
		Picker: m.pickerAddr, FailureMode: routing.FailClose}
	if failOpen {
		pool.FailureMode = routing.FailOpen
	}
	s.in.Pools[types.NamespacedName{Namespace: testNamespace, Name: pool.Name}] = pool
	r := gatewayv1.HTTPRoute{}
	r.Namespace, r.Name = testNamespace, name+"-route"
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(testGateway.Name)}}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{
		Matches: []gatewayv1.HTTPRouteMatch{{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")},
			Headers: []gatewayv1.HTTPHeaderMatch{{Name: modelHeader, Value: name}},
		}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Group: ptr.To(gatewayv1.Group(routing.PoolGroup)), Kind: ptr.To(gatewayv1.Kind(routing.PoolKind)),
			Name: gatewayv1.ObjectName(pool.Name),
		}}}},
	}}
	s.in.Routes = append(s.in.Routes, r)
}

// setPool changes a pool and applies the table, as an informer update would.
func (s *stack) setPool(model string, change func(*routing.Pool)) {
	key := types.NamespacedName{Namespace: testNamespace, Name: model + "-inferencepool"}
	p := s.in.Pools[key]
	change(&p)
	s.in.Pools[key] = p
	s.table.Update(s.in)
}

// post sends a request with the namespace's key unless headers say otherwise.
func (s *stack) do(method, path, body string, headers ...string) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.gw.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func chatBody(model string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Hello from the gateway test"}],"max_tokens":4}`, model)
}

// errorReply reads an OpenAI error envelope; it fails the test when the body is not one.
func errorReply(t testing.TB, resp *http.Response) openai.Error {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content-type = %q (body %q), want application/json", ct, b)
	}
	var env struct {
		Error *openai.Error `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Error == nil || env.Error.Message == "" {
		t.Errorf("body is not an OpenAI error envelope: %q (%v)", b, err)
		return openai.Error{}
	}
	return *env.Error
}

// scrapeMetrics parses a simulator's /metrics.
func scrapeMetrics(t testing.TB, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// successByModel sums vllm:request_success_total per model_name label.
func successByModel(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "model_name" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func statusOf(code int) *typev3.HttpStatus { return &typev3.HttpStatus{Code: typev3.StatusCode(code)} }
