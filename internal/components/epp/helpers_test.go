package epp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// startPicker runs a picker on loopback with a static endpoint set and the given config.
func startPicker(t testing.TB, config string, specs []datastore.Spec) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, Options{
		Source: datastore.StaticSource(specs), ConfigText: config,
		GRPCAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		RefreshMetricsInterval: 20 * time.Millisecond,
		Log:                    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("picker stopped with %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !srv.Store().Synced() || len(srv.Store().Endpoints()) != len(specs) {
		if time.Now().After(deadline) {
			t.Fatal("static endpoints never reached the store")
		}
		time.Sleep(time.Millisecond)
	}
	return srv
}

func dial(t testing.TB, srv *Server) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

func staticSpecs(addrs ...string) []datastore.Spec {
	var out []datastore.Spec
	for _, a := range addrs {
		out = append(out, datastore.Spec{Name: a, Address: a})
	}
	return out
}

func requestHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: eos}}}
}

func requestBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

// exchangeResult is what the data plane learns from the request phase.
type exchangeResult struct {
	dest      string // from the header mutation
	metaDest  string // from dynamic metadata
	headers   map[string]string
	body      []byte
	chunks    int
	immediate *extprocv3.ImmediateResponse
}

// sendRequest plays the data plane's request phase: headers, then the body in chunks of
// chunkSize, then reads the picker's answer.
func sendRequest(ctx context.Context, c extprocv3.ExternalProcessorClient, path string, body []byte, chunkSize int, extra ...string) (*exchangeResult, extprocv3.ExternalProcessor_ProcessClient, error) {
	stream, err := c.Process(ctx)
	if err != nil {
		return nil, nil, err
	}
	method := "POST"
	if body == nil {
		method = "GET"
	}
	hdrs := append([]string{":method", method, ":path", path, ":authority", "gw", "content-type", "application/json"}, extra...)
	if err := stream.Send(requestHeaders(body == nil, hdrs...)); err != nil {
		return nil, nil, err
	}
	for off := 0; body != nil; off += chunkSize {
		end := min(off+chunkSize, len(body))
		if err := stream.Send(requestBody(body[off:end], end == len(body))); err != nil {
			return nil, nil, err
		}
		if end == len(body) {
			break
		}
	}
	res, err := readRequestPhase(stream, body != nil)
	return res, stream, err
}

func readRequestPhase(stream extprocv3.ExternalProcessor_ProcessClient, withBody bool) (*exchangeResult, error) {
	res := &exchangeResult{headers: map[string]string{}}
	r, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if ir := r.GetImmediateResponse(); ir != nil {
		res.immediate = ir
		return res, nil
	}
	hr := r.GetRequestHeaders()
	if hr == nil {
		return nil, fmt.Errorf("first reply is %T, want request_headers", r.GetResponse())
	}
	if !hr.GetResponse().GetClearRouteCache() {
		return nil, fmt.Errorf("header reply does not clear the route cache")
	}
	for _, h := range hr.GetResponse().GetHeaderMutation().GetSetHeaders() {
		res.headers[strings.ToLower(h.GetHeader().GetKey())] = string(h.GetHeader().GetRawValue())
	}
	res.dest = res.headers[DestinationHeader]
	res.metaDest = r.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()[DestinationHeader].GetStringValue()
	for withBody {
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		sr := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return nil, fmt.Errorf("body reply %v is not a streamed_response", r)
		}
		if len(sr.GetBody()) > 62000 {
			return nil, fmt.Errorf("body chunk of %d bytes", len(sr.GetBody()))
		}
		res.body = append(res.body, sr.GetBody()...)
		res.chunks++
		if sr.GetEndOfStream() {
			break
		}
	}
	return res, nil
}

func chatBody(model, prompt string) []byte {
	b, _ := json.Marshal(map[string]any{
		"model":      model,
		"max_tokens": 8,
		"messages":   []map[string]string{{"role": "user", "content": prompt}},
	})
	return b
}
