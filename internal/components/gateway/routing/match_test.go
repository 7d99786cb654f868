package routing

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var gw = types.NamespacedName{Namespace: "models", Name: "models-gw"}

func route(name string, age time.Duration, rules ...gatewayv1.HTTPRouteRule) gatewayv1.HTTPRoute {
	r := gatewayv1.HTTPRoute{}
	r.Namespace, r.Name = gw.Namespace, name
	r.CreationTimestamp = metav1.NewTime(time.Unix(1_700_000_000, 0).Add(-age))
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw.Name)}}
	r.Spec.Rules = rules
	return r
}

func svcRef(name string, port int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(name), Port: ptr.To(port),
	}}}
}

func poolRef(name string) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Group: ptr.To(gatewayv1.Group(PoolGroup)), Kind: ptr.To(gatewayv1.Kind(PoolKind)), Name: gatewayv1.ObjectName(name),
	}}}
}

func prefix(p string, headers ...string) gatewayv1.HTTPRouteMatch {
	m := gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(p)}}
	for i := 0; i < len(headers); i += 2 {
		m.Headers = append(m.Headers, gatewayv1.HTTPHeaderMatch{Name: gatewayv1.HTTPHeaderName(headers[i]), Value: headers[i+1]})
	}
	return m
}

func rule(matches []gatewayv1.HTTPRouteMatch, refs ...gatewayv1.HTTPBackendRef) gatewayv1.HTTPRouteRule {
	return gatewayv1.HTTPRouteRule{Matches: matches, BackendRefs: refs}
}

func services(names ...string) map[types.NamespacedName]Service {
	out := map[types.NamespacedName]Service{}
	for _, n := range names {
		out[types.NamespacedName{Namespace: gw.Namespace, Name: n}] = Service{Namespace: gw.Namespace, Name: n,
			Ports: map[int32][]string{80: {n + ":80"}}}
	}
	return out
}

// matched returns "route/backend" for a request, or "" when nothing matches.
func matched(t *testing.T, s *Snapshot, method, target string, headers ...string) string {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	d, ok := s.Match(r)
	if !ok {
		return ""
	}
	if d.Backend == nil {
		return d.Route.Name + "/-"
	}
	return d.Route.Name + "/" + d.Backend.Name
}

func TestPrecedenceAndMatching(t *testing.T) {
	in := Input{Gateway: gw, Services: services("a", "b", "c", "d", "e"), Routes: []gatewayv1.HTTPRoute{
		route("catch-all", time.Hour, rule(nil, svcRef("a", 80))),
		route("model-b", 0, rule([]gatewayv1.HTTPRouteMatch{prefix("/", "X-Gateway-Model-Name", "b")}, svcRef("b", 80))),
		route("v1", 0, rule([]gatewayv1.HTTPRouteMatch{prefix("/v1/")}, svcRef("c", 80))),
		route("exact", 0, rule([]gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
			Type: ptr.To(gatewayv1.PathMatchExact), Value: ptr.To("/v1/models")}}}, svcRef("d", 80))),
		route("get-only", 0, rule([]gatewayv1.HTTPRouteMatch{{
			Path:   &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/v1")},
			Method: ptr.To(gatewayv1.HTTPMethodGet)}}, svcRef("e", 80))),
	}}
	s := Build(in)
	if len(s.Problems) != 0 {
		t.Fatalf("problems: %v", s.Problems)
	}
	for _, tc := range []struct {
		method, target string
		headers        []string
		want           string
	}{
		{"POST", "/anything", nil, "catch-all/a"},
		{"POST", "/v1/chat/completions", nil, "v1/c"},                              // longest prefix wins
		{"GET", "/v1/chat", nil, "get-only/e"},                                     // same prefix length: method match wins
		{"POST", "/v1x/chat", nil, "catch-all/a"},                                  // prefixes match whole path elements
		{"POST", "/v1", nil, "v1/c"},                                               // "/v1/" equals "/v1"
		{"GET", "/v1/models", nil, "exact/d"},                                      // exact beats every prefix
		{"POST", "/x", []string{"X-Gateway-Model-Name", "b"}, "model-b/b"},         // header match beats no match
		{"POST", "/x", []string{"x-gateway-model-name", "B"}, "catch-all/a"},       // values are case-sensitive
		{"POST", "/v1/completions", []string{"X-Gateway-Model-Name", "b"}, "v1/c"}, // path outranks headers
	} {
		if got := matched(t, s, tc.method, tc.target, tc.headers...); got != tc.want {
			t.Errorf("%s %s %v → %q, want %q", tc.method, tc.target, tc.headers, got, tc.want)
		}
	}
}

func TestTieBreaksAndAttachment(t *testing.T) {
	older := route("zz-older", time.Minute, rule(nil, svcRef("a", 80)))
	newer := route("aa-newer", 0, rule(nil, svcRef("b", 80)))
	other := route("other-gateway", 2*time.Hour, rule(nil, svcRef("c", 80)))
	other.Spec.ParentRefs[0].Name = "someone-else"
	foreign := route("foreign-ns", 3*time.Hour, rule(nil, svcRef("d", 80)))
	foreign.Namespace = "elsewhere"
	s := Build(Input{Gateway: gw, Services: services("a", "b", "c", "d"), Routes: []gatewayv1.HTTPRoute{newer, other, older, foreign}})
	if got := matched(t, s, "GET", "/"); got != "zz-older/a" {
		t.Errorf("tie → %q, want the oldest route", got)
	}
	// A route in another namespace attaches when its parentRef names the Gateway's namespace.
	foreign.Spec.ParentRefs[0].Namespace = ptr.To(gatewayv1.Namespace(gw.Namespace))
	s = Build(Input{Gateway: gw, Services: services("a", "b", "c", "d"), Routes: []gatewayv1.HTTPRoute{newer, foreign}})
	if got := matched(t, s, "GET", "/"); !strings.HasPrefix(got, "foreign-ns/") {
		t.Errorf("cross-namespace parentRef → %q", got)
	}
	var nilSnap *Snapshot
	if _, ok := nilSnap.Match(httptest.NewRequest("GET", "/", nil)); ok {
		t.Error("nil snapshot matched")
	}
}

func TestHostnamesQueryAndRegex(t *testing.T) {
	r := route("hosts", 0, rule([]gatewayv1.HTTPRouteMatch{{
		QueryParams: []gatewayv1.HTTPQueryParamMatch{{Name: "v", Value: "2"}},
		Headers: []gatewayv1.HTTPHeaderMatch{{Type: ptr.To(gatewayv1.HeaderMatchRegularExpression),
			Name: "x-model", Value: "^phi-.*$"}},
	}}, svcRef("a", 80)))
	r.Spec.Hostnames = []gatewayv1.Hostname{"*.gw.example.com"}
	bad := route("bad", 0, rule([]gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
		Type: ptr.To(gatewayv1.PathMatchRegularExpression), Value: ptr.To("(")}}}, svcRef("a", 80)))
	s := Build(Input{Gateway: gw, Services: services("a"), Routes: []gatewayv1.HTTPRoute{r, bad}})
	if len(s.Problems) != 1 {
		t.Errorf("problems = %v, want the bad regular expression only", s.Problems)
	}
	for _, tc := range []struct {
		target, model string
		want          bool
	}{
		{"http://models.gw.example.com/?v=2", "phi-4", true},
		{"http://models.gw.example.com:8080/?v=2", "phi-4", true},
		{"http://gw.example.com/?v=2", "phi-4", false}, // a wildcard needs one more label
		{"http://models.gw.example.com/?v=3", "phi-4", false},
		{"http://models.gw.example.com/?v=2", "mistral", false},
	} {
		req := httptest.NewRequest("GET", tc.target, nil)
		req.Header.Set("X-Model", tc.model)
		if _, ok := s.Match(req); ok != tc.want {
			t.Errorf("%s model %s: matched %v, want %v", tc.target, tc.model, ok, tc.want)
		}
	}
}

func TestBackendsResolutionAndWeights(t *testing.T) {
	heavy, light, zero := poolRef("heavy"), poolRef("light"), svcRef("a", 80)
	heavy.Weight, light.Weight, zero.Weight = ptr.To[int32](3), ptr.To[int32](1), ptr.To[int32](0)
	pools := map[types.NamespacedName]Pool{
		{Namespace: gw.Namespace, Name: "heavy"}: {Name: "heavy", Endpoints: []string{"10.0.0.1:5000"}},
		{Namespace: gw.Namespace, Name: "light"}: {Name: "light"},
	}
	in := Input{Gateway: gw, Pools: pools, Services: services("a"), Routes: []gatewayv1.HTTPRoute{
		route("weighted", 0, rule([]gatewayv1.HTTPRouteMatch{prefix("/w")}, heavy, light, zero)),
		route("dangling", 0, rule([]gatewayv1.HTTPRouteMatch{prefix("/d")}, poolRef("gone"), svcRef("a", 81))),
		route("all-zero", 0, rule([]gatewayv1.HTTPRouteMatch{prefix("/z")}, zero)),
	}}
	s := Build(in)
	counts := map[string]int{}
	for range 4000 {
		d, _ := s.Match(httptest.NewRequest("POST", "/w", nil))
		counts[d.Backend.Name]++
		if d.Backend.Kind != KindPool || d.Backend.Pool == nil {
			t.Fatalf("pool backend not resolved: %+v", d.Backend)
		}
	}
	if counts["a"] != 0 || counts["heavy"] < 2700 || counts["heavy"] > 3300 {
		t.Errorf("weighted picks = %v, want ~3000 heavy / 1000 light / 0 a", counts)
	}
	for range 50 {
		d, _ := s.Match(httptest.NewRequest("POST", "/d", nil))
		if !d.Backend.Missing {
			t.Fatalf("%s should be missing (no pool / no such port)", d.Backend)
		}
	}
	if d, ok := s.Match(httptest.NewRequest("POST", "/z", nil)); !ok || d.Backend != nil {
		t.Errorf("all-zero weights: %+v, %v; want a match without a backend", d, ok)
	}
}

func TestStaticUpdateSwapsSnapshot(t *testing.T) {
	st := NewStatic(Input{Gateway: gw})
	before := st.Snapshot()
	if _, ok := before.Match(httptest.NewRequest("GET", "/", nil)); ok {
		t.Fatal("empty table matched")
	}
	st.Update(Input{Gateway: gw, Services: services("a"), Routes: []gatewayv1.HTTPRoute{route("r", 0, rule(nil, svcRef("a", 80)))}})
	if _, ok := st.Snapshot().Match(httptest.NewRequest("GET", "/", nil)); !ok {
		t.Error("update did not apply")
	}
	if _, ok := before.Match(httptest.NewRequest("GET", "/", nil)); ok {
		t.Error("an old snapshot changed under its reader")
	}
}
