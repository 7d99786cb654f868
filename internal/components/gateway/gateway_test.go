package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	oai "github.com/inference-sandbox/sandbox/internal/openai"
)

func (s *stack) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.gw.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func TestChatThroughFullChain(t *testing.T) {
	s := newStack(t, stackOptions{}, "phi-4-mini", "ministral-3b")
	client := s.client(testKey)
	pods := map[string]bool{}
	for i := range 4 {
		for _, model := range []string{"phi-4-mini", "ministral-3b"} {
			var raw *http.Response
			resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:     model,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
				MaxTokens: openai.Int(8),
			}, option.WithResponseInto(&raw))
			if err != nil {
				t.Fatalf("request %d to %s: %v", i, model, err)
			}
			if resp.Model != model || len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
				t.Errorf("%s answered model %q with %d choices", model, resp.Model, len(resp.Choices))
			}
			pod := raw.Header.Get("X-Inference-Pod")
			if !strings.HasPrefix(pod, model+"-pod-") {
				t.Errorf("%s served by pod %q", model, pod)
			}
			pods[pod] = true
			if raw.Header.Get("X-Went-Into-Resp-Headers") != "true" {
				t.Error("the picker's response header mutation was not applied")
			}
		}
	}
	if len(pods) != 4 {
		t.Errorf("pods used = %v, want both pods of both models (round-robin picker)", pods)
	}
	for name, m := range s.models {
		if m.picker.picked.Load() != 4 || m.picker.sawResponse.Load() != 4 || m.picker.sawServed.Load() != 4 {
			t.Errorf("%s picker: picked %d, saw %d responses (%d with the served endpoint), want 4",
				name, m.picker.picked.Load(), m.picker.sawResponse.Load(), m.picker.sawServed.Load())
		}
		if m.picker.chunksBeforeAnswer.Load() < 4 {
			t.Errorf("%s picker got %d body chunks before answering, want every body before the answer", name, m.picker.chunksBeforeAnswer.Load())
		}
	}

	// A body-less GET is routed on a client-set model header and picked without a body.
	models, err := client.Models.List(context.Background(), option.WithHeader(modelHeader, "phi-4-mini"))
	if err != nil || len(models.Data) == 0 || models.Data[0].ID != "phi-4-mini" {
		t.Errorf("models through the gateway: %+v, %v", models, err)
	}
}

func TestStreamingIsFlushedChunkByChunk(t *testing.T) {
	const itl = 40 * time.Millisecond
	s := newStack(t, stackOptions{simsPerModel: 1, simConfig: func(c *sim.Config) {
		c.InterTokenLatency = sim.Duration(itl)
		c.Mode = sim.ModeEcho
	}}, "phi-4-mini")
	client := s.client(testKey)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "phi-4-mini",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four five six seven eight")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	start := time.Now()
	var arrivals []time.Duration
	var text strings.Builder
	var usage int64
	for stream.Next() {
		c := stream.Current()
		arrivals = append(arrivals, time.Since(start))
		if len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
		if c.Usage.CompletionTokens > 0 {
			usage = c.Usage.CompletionTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := text.String(); got != "one two three four five six seven eight" {
		t.Errorf("streamed text = %q", got)
	}
	if usage != 8 {
		t.Errorf("usage chunk reported %d completion tokens, want 8", usage)
	}
	// Eight tokens 40 ms apart take ≥ 280 ms; a gateway that buffered the response would
	// deliver every chunk at the end.
	total := arrivals[len(arrivals)-1]
	if first := arrivals[0]; total-first < 5*itl {
		t.Errorf("first chunk at %v, last at %v: chunks were not flushed as produced", first, total)
	}
}

func TestRoutesChangeWithoutRestart(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 1}, "phi-4-mini", "ministral-3b")
	// Start with only one model routed.
	s.in.Routes = s.in.Routes[:1]
	s.table.Update(s.in)
	resp := s.do("POST", "/v1/chat/completions", chatBody("ministral-3b"))
	if e := errorReply(t, resp); resp.StatusCode != 404 || e.Code != "model_not_found" {
		t.Fatalf("unrouted model: %d %+v", resp.StatusCode, e)
	}
	if got := resp.Header.Get("x-kaito-requested-model"); got != "ministral-3b" {
		t.Errorf("x-kaito-requested-model = %q", got)
	}
	s.addModelRoute("ministral-3b", false)
	s.table.Update(s.in)
	resp = s.do("POST", "/v1/chat/completions", chatBody("ministral-3b"))
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after adding the route: %d", resp.StatusCode)
	}
	// A Service backend (kind Service) on a path of its own.
	m := s.models["phi-4-mini"]
	s.in.Services[types.NamespacedName{Namespace: testNamespace, Name: "plain"}] = routing.Service{
		Namespace: testNamespace, Name: "plain", Ports: map[int32][]string{80: m.addrs}}
	svcRoute := s.in.Routes[0].DeepCopy()
	svcRoute.Name = "plain"
	svcRoute.Spec.Rules[0].Matches[0].Headers = nil
	p := "/v1/models"
	svcRoute.Spec.Rules[0].Matches[0].Path.Value = &p
	svcRoute.Spec.Rules[0].BackendRefs[0].Group, svcRoute.Spec.Rules[0].BackendRefs[0].Kind = nil, nil
	svcRoute.Spec.Rules[0].BackendRefs[0].Name = "plain"
	port := int32(80)
	svcRoute.Spec.Rules[0].BackendRefs[0].Port = &port
	s.in.Routes = append(s.in.Routes, *svcRoute)
	s.table.Update(s.in)
	resp = s.do("GET", "/v1/models", "")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"phi-4-mini"`) {
		t.Errorf("Service backend: %d %s", resp.StatusCode, body)
	}
}

func TestFailureModes(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 1}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	check := func(name string, wantStatus int, wantCode, wantSource string) {
		t.Helper()
		start := time.Now()
		resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
		e := errorReply(t, resp)
		if resp.StatusCode != wantStatus || e.Code != wantCode || resp.Header.Get(oai.ErrorSourceHeader) != wantSource {
			t.Errorf("%s: %d %v (source %q), want %d %s (source %s)", name, resp.StatusCode, e.Code,
				resp.Header.Get(oai.ErrorSourceHeader), wantStatus, wantCode, wantSource)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v", name, d)
		}
	}
	ok := func(name string) {
		t.Helper()
		resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s, want 200", name, resp.StatusCode, b)
		}
	}

	m.picker.mode.Store(int32(pickGRPCError))
	check("picker gRPC error, FailClose", 502, "epp_unavailable", "epp")
	m.picker.mode.Store(int32(pickHang))
	check("picker silent past its timeout", 502, "epp_unavailable", "epp")
	m.picker.mode.Store(int32(pickNoDestination))
	check("picker names no endpoint", 502, "epp_unavailable", "epp")
	m.picker.mode.Store(int32(pickImmediate429))
	check("picker sheds load", 429, "too_many_requests", "epp")
	m.picker.mode.Store(int32(pickImmediate503))
	check("picker has no endpoint", 503, "model_unavailable", "inferenceset")
	resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
	if resp.Header.Get("Retry-After") != "10" {
		t.Errorf("model_unavailable without retry-after: %v", resp.Header)
	}
	resp.Body.Close()

	// The destination may come in the envoy.lb dynamic metadata alone.
	m.picker.mode.Store(int32(pickMetadataOnly))
	ok("destination in dynamic metadata")

	// FailOpen: the gateway picks a ready endpoint itself when the picker fails or is gone.
	m.picker.mode.Store(int32(pickGRPCError))
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.FailureMode = routing.FailOpen })
	ok("picker gRPC error, FailOpen")
	m.picker.mode.Store(int32(pickHang))
	ok("picker silent, FailOpen")
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = "127.0.0.1:1" })
	ok("picker unreachable, FailOpen")
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = "" })
	ok("picker Service missing, FailOpen")
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Endpoints = nil })
	check("picker gone and no ready endpoint", 503, "model_unavailable", "inferenceset")
	s.setPool("phi-4-mini", func(p *routing.Pool) {
		p.FailureMode, p.Picker, p.Endpoints = routing.FailClose, "127.0.0.1:1", m.addrs
	})
	check("picker unreachable, FailClose", 502, "epp_unavailable", "epp")

	// The picker works again but its endpoint refuses connections.
	m.picker.mode.Store(int32(pickNormally))
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = m.pickerAddr })
	ok("recovered")
	m.picker.endpoints = []string{"127.0.0.1:1"}
	check("endpoint refuses connections", 503, "model_unavailable", "inferenceset")
	m.picker.endpoints = m.addrs
	// A pool that does not exist (a dangling backendRef).
	delete(s.in.Pools, types.NamespacedName{Namespace: testNamespace, Name: "phi-4-mini-inferencepool"})
	s.table.Update(s.in)
	check("InferencePool missing", 503, "model_unavailable", "inferenceset")
}

func TestFilterOutages(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cfg            func(*Config)
		code, source   string
		wantStatusCode int
	}{
		{"authz unreachable", func(c *Config) { c.AuthzAddress = "127.0.0.1:1" }, "ext_authz_unavailable", "authz", 502},
		{"bbr unreachable", func(c *Config) { c.BBRAddress = "127.0.0.1:1" }, "bbr_unavailable", "bbr", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, stackOptions{simsPerModel: 1, gateway: tc.cfg}, "phi-4-mini")
			resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
			e := errorReply(t, resp)
			if resp.StatusCode != tc.wantStatusCode || e.Code != tc.code || resp.Header.Get(oai.ErrorSourceHeader) != tc.source {
				t.Errorf("%d %+v source %q", resp.StatusCode, e, resp.Header.Get(oai.ErrorSourceHeader))
			}
			// Fail closed: nothing reached the model.
			if got := successByModel(scrapeMetrics(t, s.models["phi-4-mini"].urls[0]))["phi-4-mini"]; got != 0 {
				t.Errorf("the model served %v requests during the outage", got)
			}
		})
	}
}

func TestClientCancellationReachesBackendAndPicker(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 1, simConfig: func(c *sim.Config) {
		c.InterTokenLatency = sim.Duration(50 * time.Millisecond)
	}}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	ctx, cancel := context.WithCancel(context.Background())
	client := s.client(testKey)
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:     "phi-4-mini",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a long answer please")},
		MaxTokens: openai.Int(200),
	})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	running := func() float64 {
		for _, mm := range scrapeMetrics(t, m.urls[0])["vllm:num_requests_running"].GetMetric() {
			return mm.GetGauge().GetValue()
		}
		return -1
	}
	if running() != 1 || m.picker.open.Load() != 1 {
		t.Fatalf("before cancelling: running %v, picker streams %d", running(), m.picker.open.Load())
	}
	cancel()
	for stream.Next() {
	}
	if err := stream.Err(); !errors.Is(err, context.Canceled) {
		t.Logf("stream ended with %v", err)
	}
	if !waitFor(3*time.Second, func() bool { return running() == 0 && m.picker.open.Load() == 0 }) {
		t.Errorf("after cancelling: simulator still runs %v requests, picker has %d open streams", running(), m.picker.open.Load())
	}
}

func TestCrossModelIsolationUnderConcurrency(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 2, simConfig: func(c *sim.Config) {
		c.TimeToFirstToken = sim.Duration(30 * time.Millisecond)
	}}, "phi-4-mini", "ministral-3b")
	client := s.client(testKey)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		model := []string{"phi-4-mini", "ministral-3b"}[i%2] // interleaved
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:     model,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("isolation")},
				MaxTokens: openai.Int(4),
			})
			switch {
			case err != nil:
				errs <- err
			case resp.Model != model:
				errs <- errors.New("asked " + model + ", answered by " + resp.Model)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for name, m := range s.models {
		var total float64
		for _, u := range m.urls {
			by := successByModel(scrapeMetrics(t, u))
			for model, n := range by {
				if model != name {
					t.Errorf("a %s simulator counted %v successes for %s", name, n, model)
				}
			}
			total += by[name]
		}
		if total != 20 {
			t.Errorf("%s simulators counted %v successes, want 20", name, total)
		}
	}
}

func TestSilentBackendTimesOut(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 1, gateway: func(c *Config) { c.BackendTimeout = 300 * time.Millisecond }}, "phi-4-mini")
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the gateway hanging up, which ends the context.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	t.Cleanup(silent.Close)
	m := s.models["phi-4-mini"]
	m.picker.endpoints = []string{strings.TrimPrefix(silent.URL, "http://")}
	start := time.Now()
	resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
	e := errorReply(t, resp)
	if resp.StatusCode != 503 || e.Code != "model_unavailable" || resp.Header.Get("Retry-After") != "10" {
		t.Errorf("silent backend: %d %+v", resp.StatusCode, e)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v", d)
	}
}
