package tui

import (
	"fmt"
	"time"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

// clock is the fixed time of every fixture: views measure ages against the snapshot's time.
var clock = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fixture is two models with four pods each, one of them unplaceable for want of a fake GPU,
// a few routing decisions and a scaling timeline.
func fixture() observe.Snapshot {
	s := observe.Snapshot{Time: clock}
	s.Nodes = []observe.NodeView{
		{Name: "dash-control-plane", Ready: true},
		{Name: "dash-worker", Ready: true, GPUs: 4, GPUsUsed: 4},
		{Name: "dash-worker2", Ready: true, GPUs: 4, GPUsUsed: 3},
	}
	s.Models = []observe.ModelView{
		{Name: "ministral-3b", Namespace: "models", Desired: 4, Ready: 3, Pending: 1, Min: 1, Max: 4,
			MetricName: "vllm:num_requests_waiting", Threshold: 10, MetricValue: 12.5, HasMetric: true,
			RPS: 21.4, TTFTp50: 112 * time.Millisecond, TTFTp90: 340 * time.Millisecond, HasTTFT: true, ErrorRate: 0.02,
			Endpoint: "http://127.0.0.1:30080", DecisionSource: observe.SourceStream,
			Reason: "1 pod(s) Pending: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu"},
		{Name: "phi-4-mini", Namespace: "models", Desired: 4, Ready: 4, Min: 1, Max: 4,
			MetricName: "vllm:num_requests_waiting", Threshold: 10, MetricValue: 3, HasMetric: true, RPS: 8,
			TTFTp50: 98 * time.Millisecond, TTFTp90: 150 * time.Millisecond, HasTTFT: true,
			Endpoint: "http://127.0.0.1:30080", DecisionSource: observe.SourceStream, ReadyCond: true},
	}
	nodes := []string{"dash-worker", "dash-worker2"}
	for mi, model := range []string{"ministral-3b", "phi-4-mini"} {
		for i := range 4 {
			p := observe.PodView{Name: fmt.Sprintf("%s-%d-0", model, i), Namespace: "models", Model: model,
				Node: nodes[(mi+i)%2], IP: fmt.Sprintf("10.244.%d.%d", 1+i%2, 10+mi*4+i), Phase: "Running", Ready: true,
				Labels: map[string]string{"inferenceset.kaito.sh/created-by": model, "kaito.sh/workspace": fmt.Sprintf("%s-%d", model, i)},
				Metrics: observe.PodMetrics{Updated: clock.Add(-time.Second), Running: float64(1 + i), Waiting: float64(i * 4),
					KVUsage: 0.1 * float64(i+1), PrefixHitRate: 0.9 - 0.1*float64(i), HasPrefix: true,
					Served: float64(1000 + 37*i), RPS: 5.3 - float64(i)}}
			if model == "ministral-3b" && i == 3 {
				p.Node, p.IP, p.Phase, p.Ready = "", "", "Pending", false
				p.PendingReason = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu"
				p.Metrics = observe.PodMetrics{}
				p.Events = []observe.EventLine{{Time: clock.Add(-40 * time.Second), Type: "Warning", Reason: "FailedScheduling",
					Message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", Count: 3}}
			}
			if model == "phi-4-mini" && i == 0 {
				p.Restarts = 1
				p.Events = []observe.EventLine{
					{Time: clock.Add(-5 * time.Minute), Type: "Normal", Reason: "Scheduled", Message: "Successfully assigned models/phi-4-mini-0-0 to dash-worker2"},
					{Time: clock.Add(-4 * time.Minute), Type: "Normal", Reason: "Started", Message: "Started container model"},
				}
			}
			s.Pods = append(s.Pods, p)
		}
	}
	for i := range 6 {
		model := "phi-4-mini"
		if i%2 == 1 {
			model = "ministral-3b"
		}
		d := observe.Decision{Seq: uint64(100 + i), Time: clock.Add(time.Duration(i-6) * time.Second), Model: model,
			Pod: fmt.Sprintf("%s-%d-0", model, i%3), Status: "success", Latency: time.Duration(20+i) * time.Microsecond,
			HasPrefix: true, PrefixMatched: 31 - i, PrefixTotal: 32,
			Candidates: []observe.Candidate{
				{Pod: fmt.Sprintf("%s-%d-0", model, i%3), Total: 6.8 - 0.1*float64(i), Scores: map[string]float64{
					"prefix-cache-scorer": 1, "queue-scorer": 1, "kv-cache-utilization-scorer": 0.9 - 0.05*float64(i)}},
				{Pod: fmt.Sprintf("%s-%d-0", model, (i+1)%3), Total: 4.1},
				{Pod: fmt.Sprintf("%s-%d-0", model, (i+2)%3), Total: 2.0},
			}}
		if i == 5 {
			d.Status, d.HTTPStatus, d.Error, d.Candidates, d.HasPrefix = "ResourceExhausted", 429, "no capacity", nil, false
			d.Pod = ""
		}
		s.Decisions = append(s.Decisions, d)
	}
	s.Scaling = []observe.ScalingEvent{
		{Time: clock.Add(-40 * time.Minute), Model: "phi-4-mini", Kind: observe.KindScaleDown, To: 1, Past: true,
			Message: "New size: 1; reason: All metrics below target"},
		{Time: clock.Add(-3 * time.Minute), Model: "phi-4-mini", Kind: observe.KindScaleUp, From: 1, To: 2,
			Metric: "vllm:num_requests_waiting", Value: 14, HasValue: true, Threshold: 10,
			Message: "New size: 2; reason: external metric above target"},
		{Time: clock.Add(-2 * time.Minute), Model: "phi-4-mini", Kind: observe.KindScaleUp, From: 2, To: 4,
			Metric: "vllm:num_requests_waiting", Value: 22.5, HasValue: true, Threshold: 10},
		{Time: clock.Add(-time.Minute), Model: "ministral-3b", Kind: observe.KindScaleUp, From: 2, To: 4,
			Metric: "vllm:num_requests_waiting", Value: 18, HasValue: true, Threshold: 10},
		{Time: clock.Add(-40 * time.Second), Model: "ministral-3b", Kind: observe.KindUnschedulable, Pod: "ministral-3b-3-0",
			Message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu"},
	}
	for _, name := range []string{observe.SourceEvents, observe.SourceHPAs, observe.SourceInferenceSets,
		observe.SourceMetrics, observe.SourceNodes, observe.SourcePods, "decisions models/ministral-3b", "decisions models/phi-4-mini"} {
		s.Sources = append(s.Sources, observe.Source{Name: name, Updated: clock.Add(-time.Second)})
	}
	return s
}

// staleFixture is the fixture after the metrics scrapes stopped answering and one decision
// stream broke.
func staleFixture() observe.Snapshot {
	s := fixture()
	s.Time = clock.Add(30 * time.Second)
	for i := range s.Sources {
		switch s.Sources[i].Name {
		case observe.SourceMetrics:
			s.Sources[i].Err = "all 7 pods failed: context deadline exceeded"
		case "decisions models/phi-4-mini":
			s.Sources[i].Err = "opening the decision stream of models/phi-4-mini: connection refused"
		}
	}
	s.Models[1].DecisionSource = observe.SourceDerived
	return s
}
