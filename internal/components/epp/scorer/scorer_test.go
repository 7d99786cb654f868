package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// ep builds an endpoint with fresh metrics (or none when m is nil).
func ep(i int, m *datastore.Metrics) *datastore.Endpoint {
	e := datastore.NewEndpoint(datastore.Spec{Address: fmt.Sprintf("10.0.0.%d:5000", i)})
	if m != nil {
		if m.UpdateTime.IsZero() {
			m.UpdateTime = time.Now()
		}
		e.SetMetrics(m)
	}
	return e
}

func score(t *testing.T, f scheduling.Factory, params string, req *scheduling.Request, eps ...*datastore.Endpoint) []float64 {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	p, err := f("s", raw, scheduling.Handle{Staleness: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if req == nil {
		req = &scheduling.Request{}
	}
	out := make([]float64, len(eps))
	p.(scheduling.Scorer).Score(context.Background(), &scheduling.CycleState{}, req, eps, out)
	return out
}

func near(t *testing.T, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueScorerMinMax(t *testing.T) {
	got := score(t, NewQueue, "", nil,
		ep(1, &datastore.Metrics{WaitingQueueSize: 0}),
		ep(2, &datastore.Metrics{WaitingQueueSize: 5}),
		ep(3, &datastore.Metrics{WaitingQueueSize: 10}))
	near(t, got, []float64{1, 0.5, 0})
}

func TestQueueScorerAllEqualScoresOne(t *testing.T) {
	got := score(t, NewQueue, "", nil,
		ep(1, &datastore.Metrics{WaitingQueueSize: 3}), ep(2, &datastore.Metrics{WaitingQueueSize: 3}))
	near(t, got, []float64{1, 1})
}

func TestStaleOrMissingMetricsScoreZero(t *testing.T) {
	stale := &datastore.Metrics{UpdateTime: time.Now().Add(-time.Minute), KVCacheUsagePercent: 0}
	for _, tc := range []struct {
		name string
		f    scheduling.Factory
	}{{"queue", NewQueue}, {"kv", NewKVCache}, {"running", NewRunningRequests}, {"load-aware", NewLoadAware}} {
		got := score(t, tc.f, "", nil, ep(1, &datastore.Metrics{WaitingQueueSize: 4, RunningRequestsSize: 4, KVCacheUsagePercent: 0.5}),
			ep(2, stale), ep(3, nil))
		if got[0] <= 0 || got[1] != 0 || got[2] != 0 {
			t.Errorf("%s: fresh/stale/missing = %v, want fresh > 0 and the others 0", tc.name, got)
		}
	}
}

func TestKVCacheScorer(t *testing.T) {
	got := score(t, NewKVCache, "", nil,
		ep(1, &datastore.Metrics{KVCacheUsagePercent: 0}), ep(2, &datastore.Metrics{KVCacheUsagePercent: 0.25}),
		ep(3, &datastore.Metrics{KVCacheUsagePercent: 1}))
	near(t, got, []float64{1, 0.75, 0})
}

func TestRunningRequestsScorer(t *testing.T) {
	got := score(t, NewRunningRequests, "", nil,
		ep(1, &datastore.Metrics{RunningRequestsSize: 2}), ep(2, &datastore.Metrics{RunningRequestsSize: 6}))
	near(t, got, []float64{1, 0})
}

func TestLoadAwareScorer(t *testing.T) {
	got := score(t, NewLoadAware, `{"threshold": 10}`, nil,
		ep(1, &datastore.Metrics{WaitingQueueSize: 0}), ep(2, &datastore.Metrics{WaitingQueueSize: 5}),
		ep(3, &datastore.Metrics{WaitingQueueSize: 50}))
	near(t, got, []float64{0.5, 0.25, 0})
	if _, err := NewLoadAware("x", json.RawMessage(`{"threshold": 0}`), scheduling.Handle{}); err == nil {
		t.Error("threshold 0 accepted")
	}
}

func TestActiveRequestScorer(t *testing.T) {
	a, b, c := ep(1, nil), ep(2, nil), ep(3, nil)
	b.AddInFlight(2)
	c.AddInFlight(4)
	near(t, score(t, NewActiveRequest, "", nil, a, b, c), []float64{1, 0.5, 0})
}

func TestLoRAAffinityScorer(t *testing.T) {
	req := &scheduling.Request{TargetModel: "sql-lora"}
	got := score(t, NewLoRAAffinity, "", req,
		ep(1, &datastore.Metrics{ActiveModels: []string{"sql-lora"}, MaxActiveModels: 1}),
		ep(2, &datastore.Metrics{ActiveModels: []string{"other"}, MaxActiveModels: 2}),
		ep(3, &datastore.Metrics{ActiveModels: []string{"other"}, WaitingModels: []string{"sql-lora"}, MaxActiveModels: 1}),
		ep(4, &datastore.Metrics{ActiveModels: []string{"other"}, MaxActiveModels: 1}))
	near(t, got, []float64{1, 0.8, 0.6, 0})
}

func TestUnknownParameterIsAnError(t *testing.T) {
	for name, f := range map[string]scheduling.Factory{"queue": NewQueue, "kv": NewKVCache, "load": NewLoadAware} {
		if _, err := f("x", json.RawMessage(`{"bogus": 1}`), scheduling.Handle{}); err == nil {
			t.Errorf("%s accepted an unknown parameter", name)
		}
	}
}
