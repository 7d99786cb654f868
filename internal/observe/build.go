package observe

import (
	"sort"
	"strconv"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/mocker"
)

// BuildInput is what Build reads: cache contents and the watcher's own records.
type BuildInput struct {
	Now       time.Time
	Window    time.Duration
	Sets      []*inferenceset.InferenceSet
	Pods      []*corev1.Pod
	Nodes     []*corev1.Node
	HPAs      []*autoscalingv2.HorizontalPodAutoscaler
	Endpoints map[string]string
	Events    map[string][]EventLine
	Histories map[types.UID]*history
	ScrapeErr map[types.UID]string
	Streaming map[string]bool
	Decisions []Decision
}

// Build turns cache contents into the models, pods and nodes of a snapshot.
func Build(in BuildInput) Snapshot {
	snap := Snapshot{Time: in.Now}
	used := map[string]int64{}
	ttft := map[string]map[float64]float64{}
	rps := map[string]float64{}
	pending := map[string]int32{}
	unschedWhy := map[string]string{}
	for _, p := range in.Pods {
		model := p.Labels[inferenceset.LabelCreatedBy]
		key := p.Namespace + "/" + model
		if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			used[p.Spec.NodeName] += gpuRequest(p)
		}
		pv := PodView{Name: p.Name, Namespace: p.Namespace, Model: model, Node: p.Spec.NodeName, IP: p.Status.PodIP,
			Phase: string(p.Status.Phase), Ready: podReady(p), Labels: p.Labels,
			Events: append([]EventLine(nil), in.Events[p.Namespace+"/"+p.Name]...)}
		if p.DeletionTimestamp != nil {
			pv.Phase = "Terminating"
		}
		for _, cs := range p.Status.ContainerStatuses {
			pv.Restarts += cs.RestartCount
		}
		if why, ok := unschedulableReason(p); ok {
			pv.PendingReason = why
			if unschedWhy[key] == "" {
				unschedWhy[key] = why
			}
		}
		if p.Status.Phase == corev1.PodPending {
			pending[key]++
		}
		if h := in.Histories[p.UID]; h != nil {
			if last, ok := h.latest(); ok {
				pv.Metrics = PodMetrics{Updated: last.Time, Running: last.Running, Waiting: last.Waiting,
					KVUsage: last.KVUsage, Served: last.Success, RPS: h.rate(10 * time.Second)}
				pv.Metrics.PrefixHitRate, pv.Metrics.HasPrefix = h.prefixHitRate()
				rps[key] += pv.Metrics.RPS
				if ttft[key] == nil {
					ttft[key] = map[float64]float64{}
				}
				h.ttftDelta(ttft[key])
			}
		}
		pv.Metrics.Err = in.ScrapeErr[p.UID]
		snap.Pods = append(snap.Pods, pv)
	}
	sort.Slice(snap.Pods, func(i, j int) bool {
		a, b := snap.Pods[i], snap.Pods[j]
		if a.Model != b.Model {
			return a.Model < b.Model
		}
		return a.Name < b.Name
	})

	decided, failed := map[string]int{}, map[string]int{}
	for _, d := range in.Decisions {
		if d.Derived || in.Now.Sub(d.Time) > in.Window {
			continue
		}
		decided[d.Model]++
		if d.Status != "success" {
			failed[d.Model]++
		}
	}

	for _, is := range in.Sets {
		key := is.Namespace + "/" + is.Name
		mv := ModelView{Name: is.Name, Namespace: is.Namespace, Desired: is.DesiredReplicas(), Ready: is.Status.ReadyReplicas,
			Pending: pending[key], Endpoint: in.Endpoints[is.Namespace], RPS: rps[key], DecisionSource: SourceDerived}
		if in.Streaming[key] {
			mv.DecisionSource = SourceStream
		}
		if is.Annotations[annotationAutoProvision] == "true" {
			mv.Min, _ = strconv.Atoi(is.Annotations[annotationMinReplicas])
			mv.Max, _ = strconv.Atoi(is.Annotations[annotationMaxReplicas])
		}
		mv.MetricName, mv.Threshold = scalingMetric(is)
		for _, h := range in.HPAs {
			if h.Namespace == is.Namespace && h.Spec.ScaleTargetRef.Kind == "InferenceSet" && h.Spec.ScaleTargetRef.Name == is.Name {
				mv.MetricValue, mv.HasMetric = hpaMetric(h)
			}
		}
		if b := ttft[key]; b != nil {
			p50, ok50 := quantile(0.5, b)
			p90, ok90 := quantile(0.9, b)
			if ok50 && ok90 {
				mv.HasTTFT = true
				mv.TTFTp50 = time.Duration(p50 * float64(time.Second))
				mv.TTFTp90 = time.Duration(p90 * float64(time.Second))
			}
		}
		if n := decided[is.Name]; n > 0 {
			mv.ErrorRate = float64(failed[is.Name]) / float64(n)
		}
		mv.ReadyCond, mv.Reason = modelReady(is)
		if why := unschedWhy[key]; why != "" && !mv.ReadyCond {
			mv.Reason = strconv.Itoa(int(mv.Pending)) + " pod(s) Pending: " + why
		}
		snap.Models = append(snap.Models, mv)
	}
	sort.Slice(snap.Models, func(i, j int) bool {
		return snap.Models[i].Namespace+"/"+snap.Models[i].Name < snap.Models[j].Namespace+"/"+snap.Models[j].Name
	})

	for _, n := range in.Nodes {
		nv := NodeView{Name: n.Name, Ready: kube.NodeReady(n), GPUsUsed: used[n.Name]}
		if q, ok := n.Status.Allocatable[mocker.GPUResource]; ok {
			nv.GPUs = q.Value()
		}
		snap.Nodes = append(snap.Nodes, nv)
	}
	sort.Slice(snap.Nodes, func(i, j int) bool { return snap.Nodes[i].Name < snap.Nodes[j].Name })
	return snap
}

// modelReady reads upstream's InferenceSetReady condition, as `model list` does.
func modelReady(is *inferenceset.InferenceSet) (bool, string) {
	cond := meta.FindStatusCondition(is.Status.Conditions, inferenceset.ConditionReady)
	switch {
	case cond == nil || cond.ObservedGeneration < is.Generation:
		return false, "waiting for the InferenceSet controller"
	case cond.Status == metav1.ConditionTrue:
		return true, ""
	default:
		return false, cond.Message
	}
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
