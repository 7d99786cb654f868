package addons

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The HTTP filter chain Istio builds for a Gateway's listener once an HTTPRoute points at an
// InferencePool: its own filters, the InferencePool's ext_proc (the endpoint picker) and the
// router last. Only the relative order of these matters to the EnvoyFilters.
var istioGatewayChain = []string{
	"istio.metadata_exchange",
	"envoy.filters.http.ext_proc",
	"envoy.filters.http.grpc_stats",
	"envoy.filters.http.fault",
	"envoy.filters.http.cors",
	"istio.stats",
	"envoy.filters.http.router",
}

// applyHTTPFilterPatches applies the HTTP_FILTER patches of EnvoyFilters to a gateway pod's
// chain the way Istio does: only for filters whose workloadSelector matches the pod and whose
// context is GATEWAY; INSERT_BEFORE/AFTER without their anchor do nothing.
func applyHTTPFilterPatches(t *testing.T, chain []string, podLabels map[string]string, filters []*unstructured.Unstructured) []string {
	t.Helper()
	chain = slices.Clone(chain)
	for _, f := range filters {
		sel, _, _ := unstructured.NestedStringMap(f.Object, "spec", "workloadSelector", "labels")
		matches := true
		for k, v := range sel {
			if podLabels[k] != v {
				matches = false
			}
		}
		if !matches {
			continue
		}
		patches, _, _ := unstructured.NestedSlice(f.Object, "spec", "configPatches")
		for _, p := range patches {
			pm := p.(map[string]any)
			if pm["applyTo"] != "HTTP_FILTER" {
				continue
			}
			if ctx, _, _ := unstructured.NestedString(pm, "match", "context"); ctx != "GATEWAY" {
				t.Errorf("%s: patch context %q does not apply to gateways", f.GetName(), ctx)
				continue
			}
			if hcm, _, _ := unstructured.NestedString(pm, "match", "listener", "filterChain", "filter", "name"); hcm != "envoy.filters.network.http_connection_manager" {
				t.Errorf("%s: patch targets %q, not the HTTP connection manager", f.GetName(), hcm)
				continue
			}
			anchor, _, _ := unstructured.NestedString(pm, "match", "listener", "filterChain", "filter", "subFilter", "name")
			op, _, _ := unstructured.NestedString(pm, "patch", "operation")
			name, _, _ := unstructured.NestedString(pm, "patch", "value", "name")
			at := slices.Index(chain, anchor)
			switch op {
			case "INSERT_FIRST":
				chain = slices.Insert(chain, 0, name)
			case "INSERT_BEFORE":
				if at >= 0 {
					chain = slices.Insert(chain, at, name)
				}
			case "INSERT_AFTER":
				if at >= 0 {
					chain = slices.Insert(chain, at+1, name)
				}
			case "ADD":
				chain = append(chain, name)
			case "REMOVE":
				if at >= 0 {
					chain = slices.Delete(chain, at, at+1)
				}
			default:
				t.Errorf("%s: operation %s not modelled", f.GetName(), op)
			}
		}
	}
	return chain
}

func envoyFilters(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "EnvoyFilter" {
			out = append(out, o)
		}
	}
	return out
}

func TestFilterOrder(t *testing.T) {
	harness := renderEmbedded(t, "modelharness", "modelharness", "models", istioHarnessValues("models", true))
	filters := envoyFilters(harness)
	if len(filters) != 2 {
		t.Fatalf("want the ext_authz and BBR EnvoyFilters, got %d", len(filters))
	}
	// Istio's gateway pods carry the Gateway's name; the filters must select exactly them.
	gatewayPod := map[string]string{"gateway.networking.k8s.io/gateway-name": "models-gw"}
	otherGateway := map[string]string{"gateway.networking.k8s.io/gateway-name": "team-b-gw"}

	// Istio applies same-priority filters by creation time; the order must hold either way.
	for _, order := range [][]*unstructured.Unstructured{filters, {filters[1], filters[0]}} {
		chain := applyHTTPFilterPatches(t, istioGatewayChain, gatewayPod, order)
		pos := func(name string) int { return slices.Index(chain, name) }
		t.Logf("chain: %s", strings.Join(chain, " → "))
		if pos("envoy.filters.http.ext_authz") != 0 {
			t.Errorf("auth is not first: %v", chain)
		}
		bbr, epp := pos("envoy.filters.http.ext_proc.bbr"), pos("envoy.filters.http.ext_proc")
		if bbr < 0 || bbr != epp-1 {
			t.Errorf("BBR is not just before the endpoint picker's ext_proc: %v", chain)
		}
		if chain[len(chain)-1] != "envoy.filters.http.router" {
			t.Errorf("router is not last: %v", chain)
		}
	}

	// Other namespaces' gateways are untouched.
	if chain := applyHTTPFilterPatches(t, istioGatewayChain, otherGateway, filters); !slices.Equal(chain, istioGatewayChain) {
		t.Errorf("another namespace's gateway got this namespace's filters: %v", chain)
	}

	// Before any model exists there is no ext_proc to anchor BBR on; auth still comes first.
	noModels := slices.DeleteFunc(slices.Clone(istioGatewayChain), func(s string) bool { return s == "envoy.filters.http.ext_proc" })
	chain := applyHTTPFilterPatches(t, noModels, gatewayPod, filters)
	if chain[0] != "envoy.filters.http.ext_authz" || slices.Contains(chain, "envoy.filters.http.ext_proc.bbr") {
		t.Errorf("without models: %v", chain)
	}
}

// The catch-all route exists so every request, an unknown model's included, runs the whole
// filter chain; with the API-key check first in that chain on the same gateway and never
// disabled per route, unauthenticated requests to unknown models get 401, not 404
// (facts §1.7, §7.2).
func TestCatchAllBehindAuth(t *testing.T) {
	harness := renderEmbedded(t, "modelharness", "modelharness", "models", istioHarnessValues("models", true))
	route := find(harness, "HTTPRoute", "model-not-found-route")
	if route == nil {
		t.Fatal("no catch-all route")
	}
	parents, _, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs")
	if len(parents) != 1 || parents[0].(map[string]any)["name"] != "models-gw" {
		t.Fatalf("catch-all attaches to %v, not the namespace's gateway", parents)
	}
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	match := fmt.Sprint(rules)
	if !strings.Contains(match, "PathPrefix") || !strings.Contains(match, "value:/") {
		t.Errorf("catch-all does not match every path: %v", rules)
	}
	authz := find(harness, "EnvoyFilter", "apikey-ext-authz")
	sel, _, _ := unstructured.NestedStringMap(authz.Object, "spec", "workloadSelector", "labels")
	if sel["gateway.networking.k8s.io/gateway-name"] != "models-gw" {
		t.Errorf("ext_authz selects %v, not the catch-all's gateway", sel)
	}
	patches, _, _ := unstructured.NestedSlice(authz.Object, "spec", "configPatches")
	var filter map[string]any
	for _, p := range patches {
		pm := p.(map[string]any)
		if pm["applyTo"] == "HTTP_FILTER" {
			filter, _, _ = unstructured.NestedMap(pm, "patch", "value", "typed_config")
		}
		// A per-route or per-vhost override may only add context, never switch the check off.
		if cfg, ok, _ := unstructured.NestedMap(pm, "patch", "value", "typed_per_filter_config", "envoy.filters.http.ext_authz"); ok {
			if cfg["disabled"] == true {
				t.Errorf("a %v patch disables ext_authz", pm["applyTo"])
			}
			ns, _, _ := unstructured.NestedString(cfg, "check_settings", "context_extensions", "gateway-namespace")
			if ns != "models" {
				t.Errorf("ext_authz is told namespace %q, want models", ns)
			}
		}
	}
	for _, o := range envoyFilters(harness) {
		if o.GetName() == "apikey-ext-authz" {
			continue
		}
		if strings.Contains(fmt.Sprint(o.Object), "ext_authz") {
			t.Errorf("%s touches ext_authz", o.GetName())
		}
	}
	if filter["failure_mode_allow"] != false {
		t.Error("ext_authz fails open")
	}
	if code, _, _ := unstructured.NestedString(filter, "status_on_error", "code"); code != "ServiceUnavailable" {
		t.Errorf("ext_authz outage answers %q, want 503 (not Envoy's 403, which reads as a denial)", code)
	}
	if target, _, _ := unstructured.NestedString(filter, "grpc_service", "envoy_grpc", "cluster_name"); target != "outbound|9001||apikey-authz.llm-gateway-auth.svc.cluster.local" {
		t.Errorf("ext_authz calls %q", target)
	}
}
