// Package stacktest runs the sandbox's data path in one test process, on loopback: the
// API-key filter, the body-based router, one endpoint picker (the real one) per model, real
// simulators and the gateway in front of them. Tests of clients of the stack (the load
// generator, the dashboard) drive it like the cluster's gateway.
package stacktest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/authz"
	"github.com/inference-sandbox/sandbox/internal/components/bbr"
	"github.com/inference-sandbox/sandbox/internal/components/epp"
	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/gateway"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// Namespace and Key are the stack's workload namespace and its API key.
const (
	Namespace = "models"
	Key       = "sk-stacktest-key"
)

// Options shape a stack.
type Options struct {
	// Sims is the number of simulators per model (default 2).
	Sims int
	// SimConfig adjusts each simulator's config after the defaults (model name, seed).
	SimConfig func(*sim.Config)
	// PickerConfig is an EndpointPickerConfig; empty is the production default.
	PickerConfig string
}

// Pod is one simulator standing in for a model pod.
type Pod struct {
	Name string
	// URL is the simulator's base URL; Addr its host:port.
	URL, Addr string
	Sim       *sim.Server
}

// Model is one model's pods and picker.
type Model struct {
	Name   string
	Pods   []Pod
	Picker *epp.Server
}

// Stack is a running data path.
type Stack struct {
	// URL is the gateway's base URL: send OpenAI requests with Authorization: Bearer Key.
	URL    string
	Models map[string]*Model
}

// Start runs the stack for the given models and stops it when the test ends.
func Start(t testing.TB, o Options, models ...string) *Stack {
	t.Helper()
	if o.Sims == 0 {
		o.Sims = 2
	}
	s := &Stack{Models: map[string]*Model{}}

	authzLn := extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error {
		return authz.Serve(ctx, authzLn, authz.StaticKeys{Namespace: Key}, nil)
	})
	bbrLn, bbrHealth, bbrMetrics := extproctest.Listen(t), extproctest.Listen(t), extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error {
		return bbr.Serve(ctx, bbr.Options{Streaming: true, MaxBodyBytes: bbr.DefaultMaxBodyBytes}, bbrLn, bbrHealth, bbrMetrics)
	})

	gw := types.NamespacedName{Namespace: Namespace, Name: Namespace + "-gw"}
	in := routing.Input{Gateway: gw, Pools: map[types.NamespacedName]routing.Pool{}}
	for i, name := range models {
		m := &Model{Name: name}
		var specs []datastore.Spec
		var addrs []string
		for j := range o.Sims {
			p := StartSim(t, name, fmt.Sprintf("%s-%d-0", name, j), int64(100*i+j+1), o.SimConfig)
			m.Pods = append(m.Pods, p)
			specs = append(specs, datastore.Spec{Name: p.Name, PodName: p.Name, Namespace: Namespace, Address: p.Addr})
			addrs = append(addrs, p.Addr)
		}
		m.Picker = startPicker(t, o.PickerConfig, specs)
		s.Models[name] = m

		pool := routing.Pool{Namespace: Namespace, Name: name + "-inferencepool", Endpoints: addrs,
			Picker: m.Picker.GRPCAddr(), FailureMode: routing.FailClose}
		in.Pools[types.NamespacedName{Namespace: Namespace, Name: pool.Name}] = pool
		in.Routes = append(in.Routes, route(gw, name, pool.Name))
	}

	gs, err := gateway.New(gateway.Config{
		Gateway: gw, AuthzAddress: authzLn.Addr().String(), BBRAddress: bbrLn.Addr().String(),
		Logger: slog.New(slog.DiscardHandler),
	}, routing.NewStatic(in))
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	ts := httptest.NewServer(gs)
	t.Cleanup(func() {
		ts.Close()
		gs.Close()
	})
	s.URL = ts.URL
	return s
}

// route is the HTTPRoute a modeldeployment renders: X-Gateway-Model-Name (set by the
// body-based router) selects the model's InferencePool.
func route(gw types.NamespacedName, model, pool string) gatewayv1.HTTPRoute {
	var r gatewayv1.HTTPRoute
	r.Namespace, r.Name = gw.Namespace, model+"-route"
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw.Name)}}
	r.Spec.Rules = []gatewayv1.HTTPRouteRule{{
		Matches: []gatewayv1.HTTPRouteMatch{{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")},
			Headers: []gatewayv1.HTTPHeaderMatch{{Name: "X-Gateway-Model-Name", Value: model}},
		}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Group: ptr.To(gatewayv1.Group(routing.PoolGroup)), Kind: ptr.To(gatewayv1.Kind(routing.PoolKind)),
			Name: gatewayv1.ObjectName(pool),
		}}}},
	}}
	return r
}

// StartSim runs one simulator on loopback, reporting pod as its POD_NAME, until the test ends.
func StartSim(t testing.TB, model, pod string, seed int64, adjust func(*sim.Config)) Pod {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Model, cfg.Seed, cfg.MaxNumSeqs, cfg.MaxModelLen = model, seed, 64, 16384
	if adjust != nil {
		adjust(&cfg)
	}
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
	return Pod{Name: pod, URL: ts.URL, Addr: strings.TrimPrefix(ts.URL, "http://"), Sim: sv}
}

func startPicker(t testing.TB, config string, specs []datastore.Spec) *epp.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := epp.Start(ctx, epp.Options{
		Source: datastore.StaticSource(specs), ConfigText: config,
		GRPCAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		RefreshMetricsInterval: 20 * time.Millisecond,
		Log:                    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		cancel()
		t.Fatalf("endpoint picker: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("endpoint picker stopped with %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh := 0
		for _, e := range srv.Store().Endpoints() {
			if e.Fresh(time.Now(), time.Second) {
				fresh++
			}
		}
		if srv.Store().Synced() && fresh == len(specs) {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatal("the endpoint picker never scraped every simulator")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Targets are the model's pods as podmetrics targets, reached directly over HTTP with
// Fetch.
func (m *Model) Targets() []podmetrics.Target {
	var out []podmetrics.Target
	for _, p := range m.Pods {
		out = append(out, podmetrics.Target{Namespace: Namespace, Pod: p.Name})
	}
	return out
}

// Fetch reads a pod's metrics over loopback HTTP, as the pod proxy would in a cluster.
func (m *Model) Fetch() podmetrics.FetchFunc {
	urls := map[string]string{}
	for _, p := range m.Pods {
		urls[p.Name] = p.URL
	}
	return podmetrics.HTTPFetch(&http.Client{Timeout: 5 * time.Second}, func(t podmetrics.Target) string { return urls[t.Pod] })
}

// Counter counts the model's finished requests per pod from the simulators' own metrics.
func (m *Model) Counter() *podmetrics.Counter {
	targets := m.Targets()
	return &podmetrics.Counter{
		Scraper: &podmetrics.Scraper{Fetch: m.Fetch()},
		Targets: func(context.Context) ([]podmetrics.Target, error) { return targets, nil },
	}
}
