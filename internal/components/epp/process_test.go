package epp

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// Endpoints nobody listens on: scrapes fail fast, every endpoint scores the same, and the
// ext_proc protocol is what is under test.
var twoEndpoints = staticSpecs("127.0.0.1:9", "127.0.0.2:9")

func TestLargeBodyIsAnsweredOnlyAtEndOfStream(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 150 kB prompt: the re-serialised body needs three 62,000-byte chunks on the way back.
	body := chatBody("m", strings.Repeat("0123456789", 15000))
	if err := stream.Send(requestHeaders(false, ":method", "POST", ":path", "/v1/chat/completions",
		"x-request-id", "req-1", "x-custom", "kept", "content-length", strconv.Itoa(len(body)),
		"x-gateway-destination-endpoint", "1.2.3.4:5")); err != nil {
		t.Fatal(err)
	}
	replies := make(chan *extprocv3.ProcessingResponse, 16)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(replies)
				return
			}
			replies <- r
		}
	}()
	const chunk = 40000
	for off := 0; off+chunk < len(body); off += chunk {
		if err := stream.Send(requestBody(body[off:off+chunk], false)); err != nil {
			t.Fatal(err)
		}
	}
	// FULL_DUPLEX_STREAMED: nothing may come back before the body's end_of_stream.
	select {
	case r := <-replies:
		t.Fatalf("reply before end of body: %v", r)
	case <-time.After(150 * time.Millisecond):
	}
	last := len(body) / chunk * chunk
	if err := stream.Send(requestBody(body[last:], true)); err != nil {
		t.Fatal(err)
	}

	first := <-replies
	hr := first.GetRequestHeaders().GetResponse()
	if hr == nil || !hr.GetClearRouteCache() {
		t.Fatalf("first reply %v, want request headers with clear_route_cache", first)
	}
	set := map[string]string{}
	for _, h := range hr.GetHeaderMutation().GetSetHeaders() {
		if _, dup := set[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", h.GetHeader().GetKey())
		}
		set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	dest := set[DestinationHeader]
	if dest != "127.0.0.1:9" && dest != "127.0.0.2:9" {
		t.Fatalf("destination %q is not a pool endpoint (the client's own value must not leak through)", dest)
	}
	md := first.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()[DestinationHeader].GetStringValue()
	if md != dest {
		t.Errorf("dynamic metadata %s/%s = %q, header = %q", MetadataNamespace, DestinationHeader, md, dest)
	}
	if set["x-custom"] != "kept" || set["x-request-id"] != "req-1" || set[":path"] != "/v1/chat/completions" {
		t.Errorf("incoming headers not re-set: %v", set)
	}

	var got []byte
	chunks := 0
	for r := range replies {
		sr := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			t.Fatalf("reply %v is not a streamed body", r)
		}
		if len(sr.GetBody()) > 62000 {
			t.Errorf("chunk of %d bytes", len(sr.GetBody()))
		}
		got = append(got, sr.GetBody()...)
		chunks++
		if sr.GetEndOfStream() {
			break
		}
	}
	if chunks != 3 {
		t.Errorf("%d body chunks for %d bytes", chunks, len(got))
	}
	if set["Content-Length"] != strconv.Itoa(len(got)) {
		t.Errorf("Content-Length %q, body %d bytes", set["Content-Length"], len(got))
	}
	// Upstream re-serialises with Go's encoder: same JSON, keys sorted.
	var in, out map[string]any
	_ = json.Unmarshal(body, &in)
	if err := json.Unmarshal(got, &out); err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(in), mustJSON(out); a != b || !strings.HasPrefix(string(got), `{"max_tokens":8,"messages":`) {
		t.Errorf("forwarded body differs or keys unsorted: %.80s", got)
	}

	// Response phase: headers are acknowledged with the debug marker, a JSON body is buffered
	// until its end and then returned whole.
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(":status", "200", "content-type", "application/json")}}}); err != nil {
		t.Fatal(err)
	}
	rh := <-replies
	if !hasHeader(rh.GetResponseHeaders().GetResponse().GetHeaderMutation(), "x-went-into-resp-headers", "true") {
		t.Errorf("response headers reply %v", rh)
	}
	for i, part := range []string{`{"id":"x",`, `"object":"chat.completion"}`} {
		if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(part), EndOfStream: i == 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	rb := <-replies
	if sr := rb.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse(); string(sr.GetBody()) != `{"id":"x","object":"chat.completion"}` || !sr.GetEndOfStream() {
		t.Errorf("response body reply %v", rb)
	}
	_ = stream.CloseSend()
	waitInFlightZero(t, srv)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func hmap(kv ...string) *corev3.HeaderMap {
	return requestHeaders(false, kv...).GetRequestHeaders().GetHeaders()
}

func hasHeader(m *extprocv3.HeaderMutation, k, v string) bool {
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetKey() == k && string(h.GetHeader().GetRawValue()) == v {
			return true
		}
	}
	return false
}

func waitInFlightZero(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int64
		for _, e := range srv.Store().Endpoints() {
			n += e.InFlight()
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in-flight count stuck at %d", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStreamedResponseIsEchoedChunkByChunk(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, stream, err := sendRequest(ctx, dial(t, srv), "/v1/completions", []byte(`{"model":"m","prompt":"hi","stream":true}`), 1000)
	if err != nil || res.dest == "" {
		t.Fatalf("request phase: %v %+v", err, res)
	}
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(":status", "200", "content-type", "text/event-stream")}}})
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	for i, ev := range []string{"data: {\"a\":1}\n\n", "data: [DONE]\n\n"} {
		_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(ev), EndOfStream: i == 1}}})
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		sr := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if string(sr.GetBody()) != ev || sr.GetEndOfStream() != (i == 1) {
			t.Errorf("event %d echoed as %v", i, r)
		}
	}
	waitInFlightZero(t, srv)
}

func TestBodylessRequestGoesToARandomEndpointAtOnce(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	seen := map[string]bool{}
	for i := 0; i < 60 && len(seen) < 2; i++ {
		res, stream, err := sendRequest(context.Background(), c, "/v1/models", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.dest != res.metaDest || res.headers["content-length"] != "" {
			t.Errorf("bodyless reply %+v", res)
		}
		seen[res.dest] = true
		_ = stream.CloseSend()
	}
	if !seen["127.0.0.1:9"] || !seen["127.0.0.2:9"] {
		t.Errorf("60 bodyless requests only reached %v", seen)
	}
}

// errorOf checks an ImmediateResponse: status, OpenAI JSON body and error-source header.
func errorOf(t *testing.T, res *exchangeResult, status int, code string) {
	t.Helper()
	ir := res.immediate
	if ir == nil {
		t.Fatalf("want an immediate %d, got destination %q", status, res.dest)
	}
	if int(ir.GetStatus().GetCode()) != status {
		t.Errorf("status %d, want %d", ir.GetStatus().GetCode(), status)
	}
	var env openai.ErrorEnvelope
	if err := json.Unmarshal(ir.GetBody(), &env); err != nil {
		t.Fatalf("body %q is not an OpenAI error: %v", ir.GetBody(), err)
	}
	if env.Error.Code != code || !strings.HasPrefix(env.Error.Message, "inference error: ") {
		t.Errorf("error %+v, want code %s", env.Error, code)
	}
	if !hasHeader(ir.GetHeaders(), openai.ErrorSourceHeader, "epp") || !hasHeader(ir.GetHeaders(), "content-type", "application/json") {
		t.Errorf("headers %v", ir.GetHeaders())
	}
}

func TestErrorsAreOpenAIShapedImmediateResponses(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	for _, tc := range []struct {
		name, path, body, code string
		status                 int
	}{
		{"not JSON", "/v1/chat/completions", "{nope", "bad_request", 400},
		{"no model", "/v1/chat/completions", `{"messages":[]}`, "bad_request", 400},
		{"model not a string", "/v1/completions", `{"model":42,"prompt":"x"}`, "bad_request", 400},
		{"unknown API", "/v1/images", `{"model":"m"}`, "bad_request", 400},
	} {
		res, _, err := sendRequest(context.Background(), c, tc.path, []byte(tc.body), 3)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		errorOf(t, res, tc.status, tc.code)
	}
}

func TestNoEndpointsIs503(t *testing.T) {
	srv := startPicker(t, "", nil)
	c := dial(t, srv)
	res, _, err := sendRequest(context.Background(), c, "/v1/completions", []byte(`{"model":"m","prompt":"x"}`), 100)
	if err != nil {
		t.Fatal(err)
	}
	errorOf(t, res, http.StatusServiceUnavailable, "no_ready_endpoints")
	// Upstream answers a bodyless request without endpoints with Internal.
	res, _, err = sendRequest(context.Background(), c, "/v1/models", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	errorOf(t, res, http.StatusInternalServerError, "internal_error")
}

func TestEverythingFilteredIs429(t *testing.T) {
	cfg := `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: by-label-selector
  parameters: {matchLabels: {role: none}}
- type: queue-scorer
`
	srv := startPicker(t, cfg, twoEndpoints)
	res, _, err := sendRequest(context.Background(), dial(t, srv), "/v1/completions", []byte(`{"model":"m","prompt":"x"}`), 100)
	if err != nil {
		t.Fatal(err)
	}
	errorOf(t, res, http.StatusTooManyRequests, "resource_exhausted")
}

func TestSubsetHintRestrictsCandidates(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	send := func(subset ...string) *exchangeResult {
		stream, err := c.Process(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]any, len(subset))
		for i, s := range subset {
			vals[i] = s
		}
		list, _ := structpb.NewList(vals)
		req := requestHeaders(false, ":path", "/v1/completions")
		req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			SubsetNamespace: {Fields: map[string]*structpb.Value{SubsetKey: structpb.NewListValue(list)}}}}
		_ = stream.Send(req)
		_ = stream.Send(requestBody([]byte(`{"model":"m","prompt":"x"}`), true))
		res, err := readRequestPhase(stream, true)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for range 20 {
		if res := send("127.0.0.2:9", "10.9.9.9:1"); res.dest != "127.0.0.2:9" {
			t.Fatalf("subset [127.0.0.2:9] routed to %q", res.dest)
		}
	}
	errorOf(t, send(), http.StatusServiceUnavailable, "no_ready_endpoints")
}

// TestCancelledStreamsReleaseTheirEndpoint cancels streams at every stage: before the body
// ends, after scheduling, and mid-response. In-flight counts must return to zero and the picker
// must keep serving.
func TestCancelledStreamsReleaseTheirEndpoint(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	body := []byte(`{"model":"m","prompt":"` + strings.Repeat("p", 5000) + `"}`)

	ctx, cancel := context.WithCancel(context.Background())
	stream, _ := c.Process(ctx)
	_ = stream.Send(requestHeaders(false, ":path", "/v1/completions"))
	_ = stream.Send(requestBody(body[:100], false))
	cancel()

	ctx, cancel = context.WithCancel(context.Background())
	res, _, err := sendRequest(ctx, c, "/v1/completions", body, 1000)
	if err != nil || res.dest == "" {
		t.Fatalf("%v %+v", err, res)
	}
	cancel()

	ctx, cancel = context.WithCancel(context.Background())
	_, stream, err = sendRequest(ctx, c, "/v1/completions", body, 1000)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(":status", "200", "content-type", "text/event-stream")}}})
	_, _ = stream.Recv()
	cancel()

	waitInFlightZero(t, srv)
	res, _, err = sendRequest(context.Background(), c, "/v1/completions", body, 1000)
	if err != nil || res.dest == "" {
		t.Fatalf("picker unusable after cancellations: %v %+v", err, res)
	}
}

// TestEndpointChurnDuringTraffic replaces the endpoint set while requests flow: every request is
// routed to an endpoint of some recent set, none fails, and after the last change only the final
// set is used.
func TestEndpointChurnDuringTraffic(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	c := dial(t, srv)
	sets := [][]datastore.Spec{
		staticSpecs("127.0.0.1:9", "127.0.0.2:9"),
		staticSpecs("127.0.0.2:9", "127.0.0.3:9"),
		staticSpecs("127.0.0.4:9"),
		staticSpecs("127.0.0.3:9", "127.0.0.4:9", "127.0.0.5:9"),
	}
	valid := map[string]bool{}
	for _, s := range sets {
		for _, sp := range s {
			valid[sp.Address] = true
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, stream, err := sendRequest(context.Background(), c, "/v1/completions",
					[]byte(`{"model":"m","prompt":"`+strings.Repeat("q", 300)+strconv.Itoa(i)+`"}`), 128)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case res.immediate != nil:
					failures = append(failures, string(res.immediate.GetBody()))
				case !valid[res.dest]:
					failures = append(failures, "routed to "+res.dest)
				}
				mu.Unlock()
				if stream != nil {
					_ = stream.CloseSend()
				}
			}
		}()
	}
	for round := 0; round < 20; round++ {
		srv.Store().Replace(sets[round%len(sets)])
		time.Sleep(5 * time.Millisecond)
	}
	final := sets[3]
	srv.Store().Replace(final)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d failures during churn, first: %s", len(failures), failures[0])
	}
	for range 30 {
		res, stream, err := sendRequest(context.Background(), c, "/v1/completions", []byte(`{"model":"m","prompt":"z"}`), 10)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		if res.dest != "127.0.0.3:9" && res.dest != "127.0.0.4:9" && res.dest != "127.0.0.5:9" {
			t.Fatalf("after churn routed to %q", res.dest)
		}
	}
	waitInFlightZero(t, srv)
}

func TestHealthMetricsAndDecisions(t *testing.T) {
	srv := startPicker(t, "", twoEndpoints)
	conn, err := grpc.NewClient(srv.HealthAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range healthServices {
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %q: %v %v", svc, r, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Follow the decision stream before the request so the live path is exercised.
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/decisions?follow=1&limit=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	prompt := strings.Repeat("a shared system prompt ", 40)
	for i := range 2 {
		res, _, err := sendRequest(context.Background(), dial(t, srv), "/v1/chat/completions", chatBody("m", prompt), 500,
			"x-request-id", "rid-"+strconv.Itoa(i))
		if err != nil || res.dest == "" {
			t.Fatalf("%v %+v", err, res)
		}
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 1<<20)
	var recs []map[string]any
	for len(recs) < 2 && lines.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
			t.Fatalf("bad NDJSON line %q: %v", lines.Text(), err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 2 {
		t.Fatalf("streamed %d decisions", len(recs))
	}
	second := recs[1]
	if second["requestId"] != "rid-1" || second["model"] != "m" || second["status"] != "success" || second["endpoint"] == "" {
		t.Errorf("decision %v", second)
	}
	cands, _ := second["candidates"].([]any)
	if len(cands) != 2 {
		t.Fatalf("candidates %v", second["candidates"])
	}
	scores, _ := cands[0].(map[string]any)["scores"].(map[string]any)
	for _, s := range []string{"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"} {
		if _, ok := scores[s]; !ok {
			t.Errorf("candidate scores %v lack %s", scores, s)
		}
	}
	pf, _ := second["prefix"].(map[string]any)
	if pf["hitRatio"] != 1.0 || pf["matchedBlocks"] != pf["totalBlocks"] {
		t.Errorf("second identical prompt: prefix %v, want a full match", pf)
	}

	// The recent ring without follow returns the same two records and ends.
	r2, err := http.Get("http://" + srv.MetricsAddr() + "/decisions?limit=5")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if n := strings.Count(string(all), "\n"); n != 2 {
		t.Errorf("ring returned %d lines", n)
	}

	m, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(m.Body)
	m.Body.Close()
	for _, want := range []string{
		`inference_objective_request_total{model_name="m",priority="0",target_model_name="m"} 2`,
		`inference_extension_scheduler_attempts_total{namespace="",pod_name="127.0.0.`,
		`inference_extension_scheduler_e2e_duration_seconds_count 2`,
		`inference_extension_prefix_indexer_hit_ratio_count 2`,
		`inference_extension_prefix_indexer_hit_bytes_bucket`,
		`inference_extension_prefix_indexer_size `,
		`inference_pool_ready_pods{name="static"} 0`,
		`inference_pool_per_pod_queue_size{model_server_pod="127.0.0.1:9",name="static"} 0`,
		`inference_pool_average_kv_cache_utilization{name="static"}`,
		`inference_pool_average_queue_size{name="static"}`,
		`inference_extension_plugin_duration_seconds_count{extension_point="Scorer",plugin_name="prefix-cache-scorer",plugin_type="prefix-cache-scorer"} 2`,
		`inference_extension_info{build_ref=`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
