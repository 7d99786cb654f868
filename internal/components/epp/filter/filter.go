// Package filter holds the candidate filters of the scheduling framework (llm-d-facts §2.9).
package filter

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Type names as upstream registers them.
const (
	DecodeType        = "decode-filter"
	PrefillType       = "prefill-filter"
	LabelSelectorType = "by-label-selector"
	HeaderTestingType = "header-based-testing-filter"
)

// RoleLabel marks llm-d disaggregation roles on model-server pods.
const RoleLabel = "llm-d.ai/role"

// TestEndpointHeader lists the endpoints the header-based testing filter keeps; upstream
// conformance tests use it to pin requests to chosen pods.
const TestEndpointHeader = "test-epp-endpoint-selection"

type predicate struct {
	tn   scheduling.TypedName
	keep func(req *scheduling.Request, e *datastore.Endpoint) bool
}

func (p *predicate) TypedName() scheduling.TypedName { return p.tn }

func (p *predicate) Filter(_ context.Context, _ *scheduling.CycleState, req *scheduling.Request, eps []*datastore.Endpoint) []*datastore.Endpoint {
	var out []*datastore.Endpoint
	for _, e := range eps {
		if p.keep(req, e) {
			out = append(out, e)
		}
	}
	return out
}

// paramless is the factory of a filter that takes no parameters.
func paramless(typ string, keep func(req *scheduling.Request, e *datastore.Endpoint) bool) scheduling.Factory {
	return func(name string, raw json.RawMessage, _ scheduling.Handle) (scheduling.Plugin, error) {
		if err := scheduling.DecodeParams(raw, &struct{}{}); err != nil {
			return nil, err
		}
		return &predicate{tn: scheduling.TypedName{Type: typ, Name: name}, keep: keep}, nil
	}
}

var (
	// NewDecode keeps decode or both-role pods, and pods without a role label.
	NewDecode = paramless(DecodeType, func(_ *scheduling.Request, e *datastore.Endpoint) bool {
		role, ok := e.Labels()[RoleLabel]
		return !ok || role == "decode" || role == "both"
	})
	// NewPrefill keeps only prefill-role pods.
	NewPrefill = paramless(PrefillType, func(_ *scheduling.Request, e *datastore.Endpoint) bool {
		return e.Labels()[RoleLabel] == "prefill"
	})
	// NewHeaderTesting keeps the endpoints named (ip or ip:port) in the test-epp-endpoint-selection
	// request header.
	NewHeaderTesting = paramless(HeaderTestingType, func(req *scheduling.Request, e *datastore.Endpoint) bool {
		host, _, _ := net.SplitHostPort(e.Address)
		for _, f := range strings.Split(req.Headers[TestEndpointHeader], ",") {
			if f = strings.TrimSpace(f); f != "" && (f == e.Address || f == host) {
				return true
			}
		}
		return false
	})
)

// NewLabelSelector keeps pods whose labels contain every matchLabels pair.
func NewLabelSelector(name string, raw json.RawMessage, _ scheduling.Handle) (scheduling.Plugin, error) {
	var p struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	if err := scheduling.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if len(p.MatchLabels) == 0 {
		return nil, fmt.Errorf("parameters: matchLabels is required")
	}
	return &predicate{tn: scheduling.TypedName{Type: LabelSelectorType, Name: name},
		keep: func(_ *scheduling.Request, e *datastore.Endpoint) bool {
			l := e.Labels()
			for k, v := range p.MatchLabels {
				if l[k] != v {
					return false
				}
			}
			return true
		}}, nil
}
