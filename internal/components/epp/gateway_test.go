package epp

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/gateway"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// startGateway puts the sandbox's own gateway in front of the picker: one HTTPRoute to one
// InferencePool whose endpoint picker is srv.
func startGateway(t *testing.T, srv *Server, endpoints []string) string {
	t.Helper()
	gw := types.NamespacedName{Namespace: "models", Name: "models-gw"}
	pool := routing.Pool{Namespace: "models", Name: "m-inferencepool", Endpoints: endpoints,
		Picker: srv.GRPCAddr(), FailureMode: routing.FailClose}
	var r gatewayv1.HTTPRoute
	r.Namespace, r.Name = "models", "m-route"
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw.Name)}}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{
		Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
			Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")}}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Group: ptr.To(gatewayv1.Group(routing.PoolGroup)), Kind: ptr.To(gatewayv1.Kind(routing.PoolKind)),
			Name: gatewayv1.ObjectName(pool.Name),
		}}}},
	}}
	table := routing.NewStatic(routing.Input{Gateway: gw, Routes: []gatewayv1.HTTPRoute{r},
		Pools: map[types.NamespacedName]routing.Pool{{Namespace: "models", Name: pool.Name}: pool}})
	gs, err := gateway.New(gateway.Config{Gateway: gw, Logger: slog.New(slog.DiscardHandler)}, table)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(gs)
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestThroughTheGateway drives the picker with the sandbox gateway and real simulators: a body
// far larger than one ext_proc chunk is routed and served, identical prompts stick to one
// simulator, and an empty pool surfaces as a 503.
func TestThroughTheGateway(t *testing.T) {
	addrs := startSims(t, 2, func(c *sim.Config) { c.MaxModelLen = 1 << 20 })
	srv := startPicker(t, "", staticSpecs(addrs...))
	waitScraped(t, srv)
	base := startGateway(t, srv, addrs)

	post := func(prompt string) (*http.Response, []byte) {
		body, _ := json.Marshal(map[string]any{"model": simModel, "prompt": prompt, "max_tokens": 2})
		resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	big := strings.Repeat("a long shared context line for the gateway test. ", 3000) // ~150 kB
	for i := range 5 {
		resp, b := post(big)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	counts := []int{served(t, addrs[0]), served(t, addrs[1])}
	if counts[0]+counts[1] != 5 || (counts[0] != 5 && counts[1] != 5) {
		t.Errorf("simulators served %v; want all 5 identical prompts on one", counts)
	}

	srv.Store().Replace(nil)
	resp, b := post("anything")
	var env openai.ErrorEnvelope
	// The gateway relays the picker's 503 through its own outage mapping, so only the status
	// and the JSON shape are the picker's to assert here.
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(b, &env) != nil || env.Error.Type == "" {
		t.Errorf("empty pool: %d %s %v", resp.StatusCode, b, resp.Header)
	}
}
