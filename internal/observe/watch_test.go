package observe

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
)

// latest keeps the newest snapshot a watcher emitted.
type latest struct {
	mu   sync.Mutex
	snap Snapshot
	n    int
}

func (l *latest) sink(s Snapshot) {
	l.mu.Lock()
	l.snap, l.n = s, l.n+1
	l.mu.Unlock()
}

func (l *latest) get() (Snapshot, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap, l.n
}

func (l *latest) eventually(t *testing.T, what string, ok func(Snapshot) (bool, string)) Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		s, _ := l.get()
		var good bool
		if good, last = ok(s); good {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: never happened; last: %s", what, last)
	return Snapshot{}
}

func podOf(s Snapshot, name string) PodView {
	for _, p := range s.Pods {
		if p.Name == name {
			return p
		}
	}
	return PodView{}
}

func modelOf(s Snapshot, name string) ModelView {
	for _, m := range s.Models {
		if m.Name == name {
			return m
		}
	}
	return ModelView{}
}

// TestWatcherFollowsTheStack runs the watcher against a real kube-apiserver and the real data
// path on loopback: routing decisions come from the picker's stream for one model and from
// counter deltas for the other, pod metrics from the simulators, replica changes and
// unplaceable pods from the API server.
func TestWatcherFollowsTheStack(t *testing.T) {
	w := startWorld(t)
	stack := stacktest.Start(t, stacktest.Options{Sims: 2}, "phi-4-mini", "ministral-3b")
	for i, model := range []string{"phi-4-mini", "ministral-3b"} {
		w.addModel(t, model, 2)
		for j, p := range stack.Models[model].Pods {
			w.addPod(t, model, p.Name, []string{"w1", "w2"}[j], "10.0."+string(rune('1'+i))+"."+string(rune('1'+j)))
		}
	}
	// A scale-up of ten minutes ago, before the dashboard started: only its event tells.
	_, err := w.cs.CoreV1().Events(stacktest.Namespace).Create(w.ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "keda-hpa-phi-4-mini.0", Namespace: stacktest.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "HorizontalPodAutoscaler", Namespace: stacktest.Namespace, Name: "keda-hpa-phi-4-mini"},
		Reason:         "SuccessfulRescale", Type: corev1.EventTypeNormal, Count: 1,
		LastTimestamp: metav1.NewTime(time.Now().Add(-10 * time.Minute)),
		Message:       "New size: 2; reason: external metric s0-vllm-num_requests_waiting(nil) above target",
	}, metav1.CreateOptions{})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var got latest
	done := make(chan struct{})
	watcher := NewWatcher(Options{Clientset: w.cs, Dynamic: w.dyn, Fetch: stackFetch(stack),
		OpenStream: pickerStreams(stack, map[string]bool{"phi-4-mini": true}),
		Endpoints:  map[string]string{stacktest.Namespace: stack.URL}, ScrapeEvery: 200 * time.Millisecond})
	go func() { defer close(done); _ = watcher.Run(ctx, got.sink) }()
	t.Cleanup(func() { cancel(); <-done })

	got.eventually(t, "models, pods and live sources", func(s Snapshot) (bool, string) {
		return len(s.Models) == 2 && len(s.Pods) == 4 && modelOf(s, "phi-4-mini").DecisionSource == SourceStream &&
			!podOf(s, "phi-4-mini-0-0").Metrics.Updated.IsZero(), "models " + fmtModels(s)
	})

	got.eventually(t, "the past scale-up from the HPA's event", func(s Snapshot) (bool, string) {
		for _, e := range s.Scaling {
			if e.Past && e.Model == "phi-4-mini" && e.Kind == KindScaleUp && e.To == 2 {
				return true, ""
			}
		}
		return false, "no past entry"
	})

	chat(t, stack.URL, "phi-4-mini", 20)
	chat(t, stack.URL, "ministral-3b", 10)

	s := got.eventually(t, "20 streamed decisions and 10 derived requests", func(s Snapshot) (bool, string) {
		streamed, derived := 0, 0
		for _, d := range s.Decisions {
			switch {
			case d.Model == "phi-4-mini" && !d.Derived && d.Status == "success":
				streamed++
			case d.Model == "ministral-3b" && d.Derived:
				derived += d.Count
			}
		}
		return streamed == 20 && derived == 10, "streamed " + itoa(streamed) + " derived " + itoa(derived)
	})
	pods := map[string]bool{}
	for _, d := range s.Decisions {
		pods[d.Pod] = true
		if !d.Derived && (len(d.Candidates) != 2 || !d.HasPrefix || d.Latency <= 0) {
			t.Errorf("streamed decision without candidates, prefix or latency: %+v", d)
		}
	}
	for p := range pods {
		if podOf(s, p).Name == "" {
			t.Errorf("decision names %q, which is no pod", p)
		}
	}
	var served float64
	for _, p := range s.Pods {
		if p.Model == "phi-4-mini" {
			served += p.Metrics.Served
		}
	}
	if served != 20 {
		t.Errorf("the phi-4-mini pods' counters sum to %v, want the 20 requests sent", served)
	}
	if m := modelOf(s, "ministral-3b"); m.DecisionSource != SourceDerived || m.RPS <= 0 || m.Endpoint != stack.URL {
		t.Errorf("ministral-3b: source %q, rps %v, endpoint %q", m.DecisionSource, m.RPS, m.Endpoint)
	}
	if !slices.ContainsFunc(s.Sources, func(src Source) bool {
		return src.Name == "decisions models/ministral-3b" && strings.Contains(src.Err, "404")
	}) {
		t.Errorf("the failing decision stream is not a stale source: %+v", s.Sources)
	}

	// The HPA sees 14 waiting requests per replica and scales phi-4-mini from 2 to 3; the
	// third replica finds no free fake GPU.
	w.setMetric(t, "phi-4-mini", 14)
	got.eventually(t, "the HPA's metric", func(s Snapshot) (bool, string) {
		m := modelOf(s, "phi-4-mini")
		return m.HasMetric && m.MetricValue == 14, fmtModels(s)
	})
	w.scale(t, "phi-4-mini", 3)
	w.addPod(t, "phi-4-mini", "phi-4-mini-2-0", "", "")
	s = got.eventually(t, "scale-up and unschedulable pod on the timeline", func(s Snapshot) (bool, string) {
		var up, noGPU bool
		for _, e := range s.Scaling {
			up = up || e.Kind == KindScaleUp && e.From == 2 && e.To == 3 && e.HasValue && e.Value == 14 && e.Threshold == 10
			noGPU = noGPU || e.Kind == KindUnschedulable && e.Pod == "phi-4-mini-2-0" && strings.Contains(e.Message, "nvidia.com/gpu")
		}
		return up && noGPU && modelOf(s, "phi-4-mini").Pending == 1, fmtModels(s)
	})
	// The HPA writes the reading it acted on just after scaling; the timeline takes it.
	w.setHPAStatus(t, "phi-4-mini", 21, 3)
	s = got.eventually(t, "the scale-up completed with the HPA's reading", func(s Snapshot) (bool, string) {
		for _, e := range s.Scaling {
			if e.Kind == KindScaleUp && e.To == 3 {
				return e.Value == 21, "value " + strconv.FormatFloat(e.Value, 'g', -1, 64)
			}
		}
		return false, "no scale-up"
	})
	// Its SuccessfulRescale event says why in its own words.
	_, err = w.cs.CoreV1().Events(stacktest.Namespace).Create(w.ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "keda-hpa-phi-4-mini.1", Namespace: stacktest.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "HorizontalPodAutoscaler", Namespace: stacktest.Namespace, Name: "keda-hpa-phi-4-mini"},
		Reason:         "SuccessfulRescale", Type: corev1.EventTypeNormal, LastTimestamp: metav1.Now(), Count: 1,
		Message: "New size: 3; reason: external metric s0-vllm-num_requests_waiting(nil) above target",
	}, metav1.CreateOptions{})
	must(t, err)
	s = got.eventually(t, "the HPA's event on the timeline", func(s Snapshot) (bool, string) {
		for _, e := range s.Scaling {
			if e.Kind == KindScaleUp && e.To == 3 {
				return strings.HasSuffix(e.Message, "above target"), e.Message
			}
		}
		return false, "no scale-up"
	})
	if m := modelOf(s, "phi-4-mini"); m.Desired != 3 || !strings.Contains(m.Reason, "Insufficient nvidia.com/gpu") {
		t.Errorf("phi-4-mini after scale-up: desired %d, reason %q", m.Desired, m.Reason)
	}
	if n := s.Nodes; len(n) != 2 || n[0].GPUsUsed+n[1].GPUsUsed != 4 || n[0].GPUs != 4 {
		t.Errorf("nodes: %+v, want 4 of 8 fake GPUs used", n)
	}
}

func fmtModels(s Snapshot) string {
	var b strings.Builder
	for _, m := range s.Models {
		b.WriteString(m.Name + " desired " + itoa(int(m.Desired)) + " pending " + itoa(int(m.Pending)) + " src " + m.DecisionSource + "; ")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
