package inferenceset

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/mocker"
)

func testSet(name string, annotations map[string]string) *InferenceSet {
	return &InferenceSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "models"},
		Spec: InferenceSetSpec{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"accelerator": "nvidia", "kaito.sh/workspace": "x"}},
			Template: Template{
				Metadata:  TemplateMeta{Labels: map[string]string{"kaito.sh/owned-by": "modeldeployment"}, Annotations: annotations},
				Inference: InferenceSpec{Preset: &Preset{Name: "phi-4-mini-instruct"}},
			},
		},
	}
}

func TestReplicaNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		idx  int
		ok   bool
	}{
		{"phi-4-mini-0", 0, true},
		{"phi-4-mini-12", 12, true},
		{"phi-4-mini-01", 0, false},
		{"phi-4-mini-", 0, false},
		{"phi-4-mini-x", 0, false},
		{"phi-4-mini-0-headless", 0, false},
		{"other-1", 0, false},
	} {
		idx, ok := replicaIndex("phi-4-mini", tc.name)
		if ok != tc.ok || (ok && idx != tc.idx) {
			t.Errorf("replicaIndex(%q) = %d, %v; want %d, %v", tc.name, idx, ok, tc.idx, tc.ok)
		}
	}
	if n := ReplicaName("phi-4-mini", 3); n != "phi-4-mini-3" {
		t.Errorf("ReplicaName = %q", n)
	}
}

// The arguments must be ones `stackd sim` accepts, with the served name the clients use.
func TestSimArgsParse(t *testing.T) {
	for _, tc := range []struct {
		ann         map[string]string
		wantProfile string
		wantCalc    string
	}{
		{nil, "auto", sim.CalculatorPerToken},
		{map[string]string{AnnotationLatencyProfile: "70b-tp8", AnnotationLatencyCalculator: "constant"}, "70b-tp8", sim.CalculatorConstant},
		{map[string]string{AnnotationLatencyProfile: "small-l40s"}, "small-l40s", sim.CalculatorPerToken},
	} {
		is := testSet("phi-4-mini", tc.ann)
		if err := Validate(is); err != nil {
			t.Fatal(err)
		}
		args := SimArgs(is, DefaultOptions())
		if args[0] != "sim" {
			t.Fatalf("args %v do not start with the sim component", args)
		}
		cfg, err := sim.ParseArgs(args[1:], func(string) string { return "" })
		if err != nil {
			t.Fatalf("stackd sim rejects %v: %v", args, err)
		}
		if cfg.Port != ServingPort || cfg.DisplayModel() != "phi-4-mini" || cfg.Model != "phi-4-mini-instruct" || cfg.MaxNumSeqs != 5 {
			t.Errorf("port %d, served %q, model %q, max-num-seqs %d", cfg.Port, cfg.DisplayModel(), cfg.Model, cfg.MaxNumSeqs)
		}
		if cfg.LatencyProfile != tc.wantProfile || cfg.LatencyCalculator != tc.wantCalc {
			t.Errorf("%v: profile %q calculator %q, want %q %q", tc.ann, cfg.LatencyProfile, cfg.LatencyCalculator, tc.wantProfile, tc.wantCalc)
		}
	}
}

func TestLatencyAnnotationPrecedence(t *testing.T) {
	is := testSet("m", map[string]string{AnnotationLatencyProfile: "8b-h100"})
	is.Annotations = map[string]string{AnnotationLatencyProfile: "70b-tp8", AnnotationLatencyCalculator: "constant"}
	p, c := latency(is)
	if p != "8b-h100" || c != "constant" {
		t.Errorf("got %q %q: the template annotation must win, the object's fill in", p, c)
	}
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*InferenceSet){
		"no preset": func(is *InferenceSet) { is.Spec.Template.Inference.Preset = nil },
		"bad profile": func(is *InferenceSet) {
			is.Spec.Template.Metadata.Annotations = map[string]string{AnnotationLatencyProfile: "h200"}
		},
		"bad calculator": func(is *InferenceSet) { is.Annotations = map[string]string{AnnotationLatencyCalculator: "fast"} },
		"long name":      func(is *InferenceSet) { is.Name = strings.Repeat("a", 49) },
	} {
		is := testSet("m", nil)
		mutate(is)
		if err := Validate(is); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Validate(testSet(strings.Repeat("a", 48), nil)); err != nil {
		t.Errorf("48-character name rejected: %v", err)
	}
}

func TestStatefulSetShape(t *testing.T) {
	is := testSet("phi-4-mini", nil)
	o := DefaultOptions()
	o.Image = "stackd:test"
	sts := &appsv1.StatefulSet{}
	setStatefulSet(sts, is, "phi-4-mini-1", o)
	pod := sts.Spec.Template
	for k, v := range map[string]string{LabelCreatedBy: "phi-4-mini", LabelWorkspace: "phi-4-mini-1", LabelPodIndex: "0"} {
		if pod.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	if _, ok := pod.Labels["kaito.sh/owned-by"]; ok {
		t.Error("template labels reached the pods; KAITO keeps them on the Workspace")
	}
	if sts.Labels["kaito.sh/owned-by"] != "modeldeployment" {
		t.Error("template labels missing from the replica object")
	}
	if *sts.Spec.Replicas != 1 || sts.Spec.Selector.MatchLabels[LabelWorkspace] != "phi-4-mini-1" {
		t.Errorf("replicas %d selector %v", *sts.Spec.Replicas, sts.Spec.Selector)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "stackd:test" || c.Ports[0].ContainerPort != 5000 || c.ReadinessProbe.HTTPGet.Path != "/health" {
		t.Errorf("container %+v", c)
	}
	if q := c.Resources.Limits[mocker.GPUResource]; q.Value() != 1 {
		t.Errorf("GPU limit %v", q)
	}
	if q := c.Resources.Requests[mocker.GPUResource]; q.Value() != 1 {
		t.Errorf("GPU request %v", q)
	}
	if c.Lifecycle.PreStop.Sleep.Seconds != o.PreStopSleep || *pod.Spec.TerminationGracePeriodSeconds < o.PreStopSleep+30 {
		t.Error("a removed replica cannot drain: pre-stop sleep plus 30 s of draining must fit in the grace period")
	}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 || terms[0].MatchExpressions[0].Key != "accelerator" {
		t.Errorf("node affinity %+v: want accelerator only (reserved keys dropped)", terms)
	}
	// The template is the same whatever the replica, apart from the name, so a changed
	// annotation changes the hash and an unchanged one does not.
	before := sts.Annotations[annotationTemplateHash]
	setStatefulSet(sts, is, "phi-4-mini-1", o)
	if sts.Annotations[annotationTemplateHash] != before {
		t.Error("hash is not stable")
	}
	is.Spec.Template.Metadata.Annotations = map[string]string{AnnotationLatencyProfile: "70b-tp8"}
	setStatefulSet(sts, is, "phi-4-mini-1", o)
	if sts.Annotations[annotationTemplateHash] == before {
		t.Error("a new latency profile does not change the hash")
	}

	svc := &corev1.Service{}
	setService(svc, is, "phi-4-mini-1")
	if svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.IntValue() != 5000 ||
		svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] != "phi-4-mini-1-0" {
		t.Errorf("service %+v", svc.Spec)
	}
}

func TestPlanReplicas(t *testing.T) {
	r := func(i int, ready, current, deleting bool) replica {
		return replica{index: i, ready: ready, current: current, deleting: deleting}
	}
	stale := replica{index: 3, current: true, stale: true}
	young := func(i int, ready bool) replica { return replica{index: i, ready: ready, current: true, young: true} }
	for _, tc := range []struct {
		name                   string
		desired                int
		have                   []replica
		create, update, remove []int
		wait                   bool
	}{
		{name: "from nothing", desired: 2, create: []int{0, 1}},
		{name: "steady", desired: 2, have: []replica{r(0, true, true, false), r(1, true, true, false)}},
		{name: "scale down removes newest first", desired: 1,
			have:   []replica{r(0, true, true, false), r(2, true, true, false), r(1, true, true, false)},
			remove: []int{2, 1}},
		{name: "scale to zero", desired: 0, have: []replica{r(0, true, true, false)}, remove: []int{0}},
		{name: "terminating replica is not removed twice", desired: 1,
			have: []replica{r(0, true, true, false), r(1, true, true, true)}},
		{name: "index reused only after the old one is gone", desired: 2,
			have: []replica{r(0, true, true, false), r(1, false, true, true)}, wait: true},
		{name: "roll starts a surge replica first", desired: 3,
			have:   []replica{r(0, true, false, false), r(1, true, false, false), r(2, true, false, false)},
			create: []int{3}, wait: true},
		{name: "roll waits for the surge", desired: 3,
			have: []replica{r(0, true, false, false), r(1, true, false, false), r(2, true, false, false), young(3, false)},
			wait: true},
		{name: "ready surge: roll one", desired: 3,
			have:   []replica{r(0, true, false, false), r(1, true, false, false), r(2, true, false, false), r(3, true, true, false)},
			update: []int{0}, wait: true},
		{name: "one at a time", desired: 3,
			have: []replica{r(0, false, true, false), r(1, true, false, false), r(2, true, false, false), r(3, true, true, false)},
			wait: true},
		{name: "surge that cannot start: roll in place", desired: 3,
			have:   []replica{r(0, true, false, false), r(1, true, false, false), r(2, true, false, false), stale},
			update: []int{0}, remove: []int{3}, wait: true},
		{name: "surge serves while the rolled replica restarts", desired: 1,
			have: []replica{r(0, false, true, false), young(1, true)}, wait: true},
		{name: "an old surge is not held for a replica that does not come back", desired: 1,
			have: []replica{r(0, false, true, false), r(1, true, true, false)}, remove: []int{1}},
		{name: "surge removed when all are current", desired: 1,
			have: []replica{r(0, true, true, false), r(1, true, true, false)}, remove: []int{1}},
		{name: "scale down does not wait for kept replicas", desired: 1,
			have:   []replica{r(0, false, true, false), r(1, true, true, false), r(2, true, true, false)},
			remove: []int{2, 1}},
		{name: "outdated extras are not a surge", desired: 1,
			have:   []replica{r(0, true, true, false), r(1, true, false, false)},
			remove: []int{1}},
		{name: "no roll while another replica is down", desired: 2,
			have: []replica{r(0, true, false, false), r(1, false, true, false)}, wait: true},
		{name: "not-ready outdated replicas roll at once", desired: 2,
			have:   []replica{r(0, false, false, false), r(1, false, false, false)},
			update: []int{0, 1}},
		{name: "scale up while rolling", desired: 2, have: []replica{r(0, true, false, false)},
			create: []int{1}, wait: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planReplicas(tc.desired, tc.have)
			if !slices.Equal(p.create, tc.create) || !slices.Equal(p.update, tc.update) || !slices.Equal(p.remove, tc.remove) || p.wait != tc.wait {
				t.Errorf("got create %v update %v remove %v wait %v; want %v %v %v %v",
					p.create, p.update, p.remove, p.wait, tc.create, tc.update, tc.remove, tc.wait)
			}
		})
	}
}

func TestSummarisePending(t *testing.T) {
	pending := func(name, msg string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
		if msg != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: msg}}
		}
		return p
	}
	gpu := "0/3 nodes are available: 2 Insufficient nvidia.com/gpu. no new claims to deallocate, preemption: 0/3 nodes are available: 2 No preemption victims found for incoming pod."
	running := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "m-0-0"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	got := summarisePending([]corev1.Pod{running, pending("m-8-0", gpu), pending("m-7-0", gpu), pending("m-9-0", "")})
	want := "m-9-0 Pending; m-7-0, m-8-0 Pending (Unschedulable: 0/3 nodes are available: 2 Insufficient nvidia.com/gpu)"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestReplicaReadyIgnoresStaleStatus(t *testing.T) {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, ReadyReplicas: 1, CurrentRevision: "a", UpdateRevision: "a"}
	if !replicaReady(sts) {
		t.Error("a settled replica is not ready")
	}
	sts.Generation = 3 // the template just changed; the status still describes the old pod
	if replicaReady(sts) {
		t.Error("stale status counted as ready")
	}
	sts.Status.ObservedGeneration, sts.Status.UpdateRevision = 3, "b" // the old pod is being replaced
	if replicaReady(sts) {
		t.Error("a rolling replica counted as ready")
	}
}

func TestSimulatorArgsAnnotation(t *testing.T) {
	is := &InferenceSet{}
	is.Name = "bench"
	is.Spec.Template.Inference.Preset = &Preset{Name: "phi-4-mini-instruct"}
	is.Spec.Template.Metadata.Annotations = map[string]string{AnnotationSimulatorArgs: " --max-num-seqs 4  --kv-cache-size=96 --prefill-time-per-token 1ms "}
	if err := Validate(is); err != nil {
		t.Fatal(err)
	}
	args := SimArgs(is, DefaultOptions())
	cfg, err := sim.ParseArgs(args[1:], func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	// The annotation comes after the defaults, so it wins over the controller's --max-num-seqs 5.
	if cfg.MaxNumSeqs != 4 || cfg.KVCacheSize != 96 || cfg.Port != ServingPort {
		t.Fatalf("max-num-seqs %d, kv-cache-size %d, port %d from %q", cfg.MaxNumSeqs, cfg.KVCacheSize, cfg.Port, args)
	}

	for annotation, want := range map[string]string{
		"--max-num-seqs four":   "max-num-seqs",
		"--no-such-flag 1":      "no-such-flag",
		"--port 8000":           "--port is set by the controller",
		"--served-model-name x": "--served-model-name is set by the controller",
	} {
		is.Spec.Template.Metadata.Annotations[AnnotationSimulatorArgs] = annotation
		err := Validate(is)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), AnnotationSimulatorArgs) {
			t.Errorf("%q: error %v, want one naming %q and the annotation", annotation, err, want)
		}
	}
}
