// Package scorer holds the load-based scorers of the scheduling framework (llm-d-facts §2.9).
// The prefix-cache scorer lives in package prefix because it carries an index.
//
// Metrics older than the staleness threshold are not trusted: such an endpoint scores 0 on every
// metric-based scorer, the same as the most loaded one. This is our choice where upstream only
// excludes stale endpoints from the ready-pods gauge; it keeps a hung model server, whose
// /metrics no longer answers, from attracting traffic with its last good numbers.
package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Type names as upstream registers them.
const (
	QueueType           = "queue-scorer"
	KVCacheType         = "kv-cache-utilization-scorer"
	RunningRequestsType = "running-requests-size-scorer"
	LoadAwareType       = "load-aware-scorer"
	ActiveRequestType   = "active-request-scorer"
	LoRAAffinityType    = "lora-affinity-scorer"
)

type base struct {
	tn        scheduling.TypedName
	staleness time.Duration
}

func (b base) TypedName() scheduling.TypedName { return b.tn }

// fresh returns the endpoint's metrics and whether they are young enough to trust.
func (b base) fresh(e *datastore.Endpoint, now time.Time) (*datastore.Metrics, bool) {
	m := e.Metrics()
	return m, !m.UpdateTime.IsZero() && now.Sub(m.UpdateTime) <= b.staleness
}

func newBase(typ, name string, h scheduling.Handle) base {
	st := h.Staleness
	if st <= 0 {
		st = 2 * time.Second
	}
	return base{tn: scheduling.TypedName{Type: typ, Name: name}, staleness: st}
}

// minMax scores value v in [lo,hi] as (hi−v)/(hi−lo), 1.0 when all candidates are equal: the
// least loaded endpoint gets 1 and the most loaded 0 (GAIE queue-scorer semantics).
type minMax struct {
	base
	value func(*datastore.Metrics) float64
}

func (s *minMax) Score(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, eps []*datastore.Endpoint, out []float64) {
	now := time.Now()
	lo, hi := 0.0, 0.0
	first := true
	for i, e := range eps {
		m, ok := s.fresh(e, now)
		if !ok {
			out[i] = -1
			continue
		}
		v := s.value(m)
		out[i] = v
		if first || v < lo {
			lo = v
		}
		if first || v > hi {
			hi = v
		}
		first = false
	}
	for i, v := range out {
		switch {
		case v < 0:
			out[i] = 0
		case hi == lo:
			out[i] = 1
		default:
			out[i] = (hi - v) / (hi - lo)
		}
	}
}

// NewQueue builds queue-scorer: min–max normalised vllm:num_requests_waiting.
func NewQueue(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return &minMax{base: newBase(QueueType, name, h), value: func(m *datastore.Metrics) float64 {
		return float64(m.WaitingQueueSize)
	}}, nil
}

// NewRunningRequests builds running-requests-size-scorer: min–max normalised running count.
func NewRunningRequests(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return &minMax{base: newBase(RunningRequestsType, name, h), value: func(m *datastore.Metrics) float64 {
		return float64(m.RunningRequestsSize)
	}}, nil
}

// perEndpoint scores each endpoint from its own fresh metrics alone; stale endpoints score 0.
type perEndpoint struct {
	base
	score func(req *scheduling.Request, m *datastore.Metrics) float64
}

func (s *perEndpoint) Score(_ context.Context, _ *scheduling.CycleState, req *scheduling.Request, eps []*datastore.Endpoint, out []float64) {
	now := time.Now()
	for i, e := range eps {
		if m, ok := s.fresh(e, now); ok {
			out[i] = s.score(req, m)
		} else {
			out[i] = 0
		}
	}
}

// noParams rejects parameters for plugins that take none, so a stray key is reported.
func noParams(params json.RawMessage) error { return scheduling.DecodeParams(params, &struct{}{}) }

// NewKVCache builds kv-cache-utilization-scorer: 1 − vllm:kv_cache_usage_perc.
func NewKVCache(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return &perEndpoint{base: newBase(KVCacheType, name, h), score: func(_ *scheduling.Request, m *datastore.Metrics) float64 {
		return 1 - m.KVCacheUsagePercent
	}}, nil
}

// NewLoadAware builds llm-d's load-aware-scorer: an empty queue scores 0.5, a queue of q scores
// 0.5·(1 − min(q, threshold)/threshold), so it only separates endpoints that are queueing.
// Parameter threshold defaults to 128.
func NewLoadAware(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	p := struct {
		Threshold int `json:"threshold"`
	}{Threshold: 128}
	if err := scheduling.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Threshold <= 0 {
		return nil, fmt.Errorf("parameters: threshold must be positive, got %d", p.Threshold)
	}
	t := float64(p.Threshold)
	return &perEndpoint{base: newBase(LoadAwareType, name, h), score: func(_ *scheduling.Request, m *datastore.Metrics) float64 {
		if m.WaitingQueueSize == 0 {
			return 0.5
		}
		return 0.5 * (1 - min(float64(m.WaitingQueueSize), t)/t)
	}}, nil
}

// NewLoRAAffinity builds lora-affinity-scorer: 1 when the target adapter is already active, 0.8
// when the server has room to load it, 0.6 when it is waiting to load, else 0.
func NewLoRAAffinity(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return &perEndpoint{base: newBase(LoRAAffinityType, name, h), score: func(req *scheduling.Request, m *datastore.Metrics) float64 {
		switch {
		case slices.Contains(m.ActiveModels, req.TargetModel):
			return 1
		case len(m.ActiveModels)+len(m.WaitingModels) < m.MaxActiveModels:
			return 0.8
		case slices.Contains(m.WaitingModels, req.TargetModel):
			return 0.6
		}
		return 0
	}}, nil
}

// ActiveRequest is active-request-scorer: it scores the picker's own in-flight count per
// endpoint, which unlike scraped gauges is exact at the moment of the decision.
// An idle endpoint scores 1, otherwise (max − n)/max over the candidates.
type ActiveRequest struct{ base }

// NewActiveRequest builds active-request-scorer. The in-flight count is kept by the ext_proc
// server for every request, so the scorer needs no state of its own.
func NewActiveRequest(name string, params json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	// requestTimeout is accepted for compatibility; in-flight entries here end with their
	// ext_proc stream, which cannot leak the way a separate TTL cache can.
	p := struct {
		RequestTimeout string `json:"requestTimeout"`
	}{}
	if err := scheduling.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	return &ActiveRequest{newBase(ActiveRequestType, name, h)}, nil
}

// Score implements scheduling.Scorer.
func (s *ActiveRequest) Score(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, eps []*datastore.Endpoint, out []float64) {
	var hi int64
	for _, e := range eps {
		hi = max(hi, e.InFlight())
	}
	for i, e := range eps {
		n := e.InFlight()
		if n <= 0 {
			out[i] = 1
		} else {
			out[i] = float64(hi-n) / float64(hi)
		}
	}
}
