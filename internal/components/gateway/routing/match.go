package routing

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// PoolGroup and PoolKind name an InferencePool in a backendRef (llm-d-facts §4.3).
const (
	PoolGroup = "inference.networking.k8s.io"
	PoolKind  = "InferencePool"
)

// BackendKind tells which kind of object a backendRef names.
type BackendKind int

// Backend kinds the data plane serves; anything else is Unsupported.
const (
	Unsupported BackendKind = iota
	KindService
	KindPool
)

// Backend is one resolved backendRef. Exactly one of Pool and Addresses is meaningful, by Kind;
// Missing says the referenced object does not exist (or has no such port).
type Backend struct {
	Kind      BackendKind
	Namespace string
	Name      string
	Port      int32
	Weight    int32
	Pool      *Pool
	Addresses []string
	Missing   bool
}

func (b *Backend) String() string {
	kind := "Service"
	if b.Kind == KindPool {
		kind = PoolKind
	}
	return fmt.Sprintf("%s %s/%s", kind, b.Namespace, b.Name)
}

// Decision is the outcome of matching a request: the route and rule that matched and the
// backend chosen among the rule's weighted backendRefs (nil when the rule has none or all
// weights are zero; Gateway API answers 500 then).
type Decision struct {
	Route   types.NamespacedName
	Rule    int
	Backend *Backend
}

// Snapshot is an immutable, compiled route table.
type Snapshot struct {
	matches []*compiledMatch
	pools   map[types.NamespacedName]*Pool
	// Problems lists what could not be compiled (a bad regular expression, an unsupported
	// backend kind); the rest of the table still works.
	Problems []string
}

type compiledMatch struct {
	route     types.NamespacedName
	created   int64 // unix nanoseconds, for the "oldest route wins" tie break
	hostnames []string
	ruleIndex int
	order     int // position among all matches of the route, to keep list order last

	pathType  gatewayv1.PathMatchType
	pathValue string
	pathRE    *regexp.Regexp
	method    string
	headers   []valueMatch
	query     []valueMatch

	backends    []*Backend
	totalWeight int32
}

type valueMatch struct {
	name  string
	value string
	re    *regexp.Regexp
}

func (v valueMatch) ok(got string) bool {
	if v.re != nil {
		return v.re.MatchString(got)
	}
	return got == v.value
}

// Build compiles in into a snapshot. Routes that do not name in.Gateway as a parent are left
// out, as the Gateway API attaches a route only to the parents it lists.
func Build(in Input) *Snapshot {
	s := &Snapshot{pools: make(map[types.NamespacedName]*Pool, len(in.Pools))}
	for k, p := range in.Pools {
		s.pools[k] = &p
	}
	for i := range in.Routes {
		r := &in.Routes[i]
		if !attached(r, in.Gateway) {
			continue
		}
		s.compileRoute(r, in)
	}
	slices.SortStableFunc(s.matches, precedence)
	return s
}

// attached reports whether r lists gw among its parentRefs. Group and kind default to the
// Gateway API's Gateway; the namespace defaults to the route's own.
func attached(r *gatewayv1.HTTPRoute, gw types.NamespacedName) bool {
	for _, p := range r.Spec.ParentRefs {
		if p.Group != nil && string(*p.Group) != gatewayv1.GroupName {
			continue
		}
		if p.Kind != nil && string(*p.Kind) != "Gateway" {
			continue
		}
		ns := r.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		if ns == gw.Namespace && string(p.Name) == gw.Name {
			return true
		}
	}
	return false
}

func (s *Snapshot) compileRoute(r *gatewayv1.HTTPRoute, in Input) {
	name := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	var hosts []string
	for _, h := range r.Spec.Hostnames {
		hosts = append(hosts, strings.ToLower(string(h)))
	}
	order := 0
	for ri, rule := range r.Spec.Rules {
		backends, total := s.resolveBackends(name, rule.BackendRefs, in)
		matches := rule.Matches
		if len(matches) == 0 {
			// A rule without matches matches every request (path prefix "/").
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for _, m := range matches {
			cm, err := compileMatch(m)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("HTTPRoute %s rule %d: %v", name, ri, err))
				continue
			}
			cm.route, cm.created, cm.hostnames = name, r.CreationTimestamp.UnixNano(), hosts
			cm.ruleIndex, cm.order = ri, order
			cm.backends, cm.totalWeight = backends, total
			order++
			s.matches = append(s.matches, cm)
		}
	}
}

func compileMatch(m gatewayv1.HTTPRouteMatch) (*compiledMatch, error) {
	cm := &compiledMatch{pathType: gatewayv1.PathMatchPathPrefix, pathValue: "/"}
	if p := m.Path; p != nil {
		if p.Type != nil {
			cm.pathType = *p.Type
		}
		if p.Value != nil {
			cm.pathValue = *p.Value
		}
		switch cm.pathType {
		case gatewayv1.PathMatchExact:
		case gatewayv1.PathMatchPathPrefix:
			// "/v1/" and "/v1" are the same prefix: the match is by path element.
			if len(cm.pathValue) > 1 {
				cm.pathValue = strings.TrimSuffix(cm.pathValue, "/")
			}
		case gatewayv1.PathMatchRegularExpression:
			re, err := regexp.Compile("^(?:" + cm.pathValue + ")$")
			if err != nil {
				return nil, fmt.Errorf("path regular expression %q: %w", cm.pathValue, err)
			}
			cm.pathRE = re
		default:
			return nil, fmt.Errorf("unsupported path match type %q", cm.pathType)
		}
	}
	if m.Method != nil {
		cm.method = string(*m.Method)
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		// Only the first of several matches on the same header name counts (Gateway API).
		name := http.CanonicalHeaderKey(string(h.Name))
		if seen[name] {
			continue
		}
		seen[name] = true
		vm, err := newValueMatch(name, h.Value, h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		cm.headers = append(cm.headers, vm)
	}
	for _, q := range m.QueryParams {
		vm, err := newValueMatch(string(q.Name), q.Value, q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression)
		if err != nil {
			return nil, fmt.Errorf("query parameter %s: %w", q.Name, err)
		}
		cm.query = append(cm.query, vm)
	}
	return cm, nil
}

func newValueMatch(name, value string, regex bool) (valueMatch, error) {
	vm := valueMatch{name: name, value: value}
	if regex {
		re, err := regexp.Compile(value)
		if err != nil {
			return vm, fmt.Errorf("regular expression %q: %w", value, err)
		}
		vm.re = re
	}
	return vm, nil
}

func (s *Snapshot) resolveBackends(route types.NamespacedName, refs []gatewayv1.HTTPBackendRef, in Input) ([]*Backend, int32) {
	var out []*Backend
	var total int32
	for _, ref := range refs {
		b := &Backend{Namespace: route.Namespace, Name: string(ref.Name), Weight: 1}
		if ref.Namespace != nil {
			b.Namespace = string(*ref.Namespace)
		}
		if ref.Weight != nil {
			b.Weight = *ref.Weight
		}
		if ref.Port != nil {
			b.Port = *ref.Port
		}
		group, kind := "", "Service"
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
		switch {
		case group == "" && kind == "Service":
			b.Kind = KindService
			// A Service without the referenced port is as unusable as a missing one.
			svc, ok := in.Services[key]
			addrs, hasPort := svc.Ports[b.Port]
			b.Addresses, b.Missing = addrs, !ok || !hasPort
		case group == PoolGroup && kind == PoolKind:
			b.Kind = KindPool
			if p, ok := s.pools[key]; ok {
				b.Pool = p
			} else {
				b.Missing = true
			}
		default:
			s.Problems = append(s.Problems, fmt.Sprintf("HTTPRoute %s: unsupported backend %s/%s", route, group, kind))
		}
		if b.Weight > 0 {
			total += b.Weight
		}
		out = append(out, b)
	}
	return out, total
}

// precedence orders matches as the Gateway API requires: exact path, then the longest prefix,
// then a method match, then more header matches, then more query matches; ties go to the oldest
// route, then to namespace/name in alphabetical order, then to list order within the route.
// Regular-expression paths are implementation-specific; they rank after every prefix here.
func precedence(a, b *compiledMatch) int {
	if c := cmp.Compare(pathRank(b), pathRank(a)); c != 0 {
		return c
	}
	if a.pathType == gatewayv1.PathMatchPathPrefix && b.pathType == gatewayv1.PathMatchPathPrefix {
		if c := cmp.Compare(len(b.pathValue), len(a.pathValue)); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(boolInt(b.method != ""), boolInt(a.method != "")); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.headers), len(a.headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.query), len(a.query)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.created, b.created); c != 0 {
		return c
	}
	if c := cmp.Compare(a.route.String(), b.route.String()); c != 0 {
		return c
	}
	return cmp.Compare(a.order, b.order)
}

func pathRank(m *compiledMatch) int {
	switch m.pathType {
	case gatewayv1.PathMatchExact:
		return 2
	case gatewayv1.PathMatchPathPrefix:
		return 1
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Pool returns the InferencePool namespace/name as this snapshot knows it.
func (s *Snapshot) Pool(namespace, name string) (*Pool, bool) {
	if s == nil {
		return nil, false
	}
	p, ok := s.pools[types.NamespacedName{Namespace: namespace, Name: name}]
	return p, ok
}

// Match finds the highest-precedence match for a request and picks one of its backends by
// weight; ok is false when no route matches.
func (s *Snapshot) Match(r *http.Request) (d *Decision, ok bool) {
	if s == nil {
		return nil, false
	}
	host := hostOnly(r.Host)
	var query url.Values
	for _, m := range s.matches {
		if len(m.query) > 0 && query == nil {
			query = r.URL.Query()
		}
		if !m.matches(r, host, query) {
			continue
		}
		return &Decision{Route: m.route, Rule: m.ruleIndex, Backend: m.pick()}, true
	}
	return nil, false
}

func (m *compiledMatch) matches(r *http.Request, host string, query url.Values) bool {
	if len(m.hostnames) > 0 && !slices.ContainsFunc(m.hostnames, func(h string) bool { return hostMatches(h, host) }) {
		return false
	}
	if !m.pathMatches(r.URL.Path) {
		return false
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for _, h := range m.headers {
		vs, ok := r.Header[h.name]
		// Repeated headers are compared as one comma-joined value, as proxies fold them.
		if !ok || !h.ok(strings.Join(vs, ",")) {
			return false
		}
	}
	for _, q := range m.query {
		vs, ok := query[q.name]
		if !ok || !q.ok(vs[0]) {
			return false
		}
	}
	return true
}

func (m *compiledMatch) pathMatches(path string) bool {
	switch m.pathType {
	case gatewayv1.PathMatchExact:
		return path == m.pathValue
	case gatewayv1.PathMatchRegularExpression:
		return m.pathRE.MatchString(path)
	}
	if m.pathValue == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(path, m.pathValue)
	return ok && (rest == "" || rest[0] == '/')
}

// pick chooses a backend with probability proportional to its weight.
func (m *compiledMatch) pick() *Backend {
	if m.totalWeight <= 0 {
		return nil
	}
	if len(m.backends) == 1 {
		return m.backends[0]
	}
	n := rand.Int32N(m.totalWeight)
	for _, b := range m.backends {
		if b.Weight <= 0 {
			continue
		}
		if n < b.Weight {
			return b
		}
		n -= b.Weight
	}
	return nil
}

// hostMatches compares a route hostname (possibly "*.example.com") with the request's host.
func hostMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return pattern == host
}

func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
