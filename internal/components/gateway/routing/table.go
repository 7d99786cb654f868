// Package routing turns Gateway API objects (HTTPRoute gateway.networking.k8s.io/v1 and
// InferencePool inference.networking.k8s.io/v1) into the route table of one Gateway, and
// matches requests against it with the Gateway API's precedence rules.
//
// A table is an immutable Snapshot behind the Table interface: the data plane reads the current
// snapshot once per request, and a source (informers in a cluster, Static in tests) swaps in a
// new one when objects change, so routes apply without a restart and without locks on the
// request path.
package routing

import (
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Table hands out the current route snapshot of one Gateway.
type Table interface {
	// Snapshot returns the routes in force now; nil means none are known yet.
	Snapshot() *Snapshot
}

// Input is everything a snapshot is built from: the Gateway it serves, the HTTPRoutes (those not
// attached to the Gateway are ignored) and the backends they may reference, already resolved to
// addresses.
type Input struct {
	Gateway types.NamespacedName
	Routes  []gatewayv1.HTTPRoute
	// Pools are the InferencePools by namespace/name.
	Pools map[types.NamespacedName]Pool
	// Services are the Services by namespace/name.
	Services map[types.NamespacedName]Service
}

// FailureMode is what the data plane does when a pool's endpoint picker cannot be used.
type FailureMode string

// The InferencePool API's failure modes (../shared/facts/llm-d-facts.md §2.4, §4.1).
const (
	// FailClose rejects the request; the API's default.
	FailClose FailureMode = "FailClose"
	// FailOpen forwards to a ready endpoint of the data plane's own choosing.
	FailOpen FailureMode = "FailOpen"
)

// Pool is an InferencePool resolved for the data plane.
type Pool struct {
	Namespace, Name string
	// Endpoints are the ready endpoints, "ip:port", one per ready pod and target port.
	Endpoints []string
	// Picker is the endpoint picker's ext_proc address ("host:port"); empty when its Service
	// cannot be resolved, which counts as the picker being unavailable.
	Picker      string
	FailureMode FailureMode
}

// Service is a Service backend resolved for the data plane.
type Service struct {
	Namespace, Name string
	// Ports maps a Service port to the addresses that serve it, "host:port".
	Ports map[int32][]string
}

// Static is a Table whose input is set by its owner, for tests and for a gateway run from a file.
type Static struct {
	cur atomic.Pointer[Snapshot]
}

// NewStatic builds a table from in.
func NewStatic(in Input) *Static {
	s := &Static{}
	s.Update(in)
	return s
}

// Update replaces the routes; requests already routed keep the snapshot they started with.
func (s *Static) Update(in Input) { s.cur.Store(Build(in)) }

// Snapshot implements Table.
func (s *Static) Snapshot() *Snapshot { return s.cur.Load() }
