package inferenceset

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

// TestControllerAgainstAPIServer runs the controller, with exactly the RBAC of its offline
// manifest, against a real kube-apiserver. Nothing runs pods there, so the test plays the
// StatefulSet controller and the scheduler by writing their status.
func TestControllerAgainstAPIServer(t *testing.T) {
	data, err := fs.ReadFile(manifests.CRDs, "kaito.sh_inferencesets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: apiservertest.BinaryDir(t),
		CRDInstallOptions:     envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}},
	}
	log.SetLogger(logr.Discard())
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	kc, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := addons.Render(manifests.Offline, "inferenceset.yaml", addons.Values{SystemNamespace: "sandbox-system", StackdImage: "stackd:test"})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(rendered)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatalf("applying manifests/offline/inferenceset.yaml: %v", err)
	}
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	asController := rest.CopyConfig(cfg)
	asController.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:sandbox-system:inferenceset-controller"}
	mo := ManagerOptions(scheme)
	mo.Metrics = metricsserver.Options{BindAddress: "0"}
	// Controller names are unique per process; `go test -count 2` builds the same one again.
	mo.Controller.SkipNameValidation = ptr.To(true)
	mgr, err := ctrl.NewManager(asController, mo)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Image = "stackd:test"
	if err := (&Reconciler{Client: mgr.GetClient(), Options: o, Recorder: mgr.GetEventRecorder("inferenceset-controller")}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		last := ""
		for time.Now().Before(deadline) {
			ok, why := cond()
			if ok {
				return
			}
			last = why
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s: %s", what, last)
	}
	replicaNames := func() []string {
		var l appsv1.StatefulSetList
		must(c.List(ctx, &l, client.InNamespace("models")))
		var names []string
		for _, s := range l.Items {
			if s.DeletionTimestamp.IsZero() {
				names = append(names, s.Name)
			}
		}
		slices.Sort(names)
		return names
	}
	hasReplicas := func(want ...string) func() (bool, string) {
		return func() (bool, string) {
			got := replicaNames()
			return slices.Equal(got, want), fmt.Sprintf("replicas %v, want %v", got, want)
		}
	}
	isKey := types.NamespacedName{Namespace: "models", Name: "phi-4-mini"}
	status := func(want func(InferenceSetStatus) bool) func() (bool, string) {
		return func() (bool, string) {
			var is InferenceSet
			if err := c.Get(ctx, isKey, &is); err != nil {
				return false, err.Error()
			}
			return want(is.Status), fmt.Sprintf("status %+v", is.Status)
		}
	}
	// markReady plays the StatefulSet controller: replica name has one ready pod.
	markReady := func(name string) {
		t.Helper()
		var sts appsv1.StatefulSet
		must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: name}, &sts))
		sts.Status.Replicas, sts.Status.ReadyReplicas, sts.Status.AvailableReplicas = 1, 1, 1
		sts.Status.ObservedGeneration = sts.Generation
		must(c.Status().Update(ctx, &sts))
	}

	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "models"}}))
	// As the modeldeployment chart writes it.
	is := &InferenceSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "models", Name: "phi-4-mini", Annotations: map[string]string{
			"scaledobject.kaito.sh/auto-provision": "true", "scaledobject.kaito.sh/max-replicas": "4",
		}},
		Spec: InferenceSetSpec{
			Replicas:      ptr.To[int32](2),
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"accelerator": "nvidia"}},
			Template: Template{
				Metadata:  TemplateMeta{Labels: map[string]string{"kaito.sh/owned-by": "modeldeployment"}},
				Inference: InferenceSpec{Preset: &Preset{Name: "phi-4-mini-instruct"}},
			},
		},
	}
	must(c.Create(ctx, is))

	eventually("two replicas", hasReplicas("phi-4-mini-0", "phi-4-mini-1"))
	for _, name := range []string{"phi-4-mini-0", "phi-4-mini-1", "phi-4-mini-0-headless", "phi-4-mini-1-headless"} {
		var svc corev1.Service
		eventually("Service "+name, func() (bool, string) {
			err := c.Get(ctx, types.NamespacedName{Namespace: "models", Name: name}, &svc)
			return err == nil, fmt.Sprint(err)
		})
		if svc.Labels[LabelCreatedBy] != "phi-4-mini" || !metav1.IsControlledBy(&svc, mustGet(t, c, ctx, isKey)) {
			t.Errorf("Service %s: labels %v, owners %v", name, svc.Labels, svc.OwnerReferences)
		}
	}
	eventually("status before any replica is ready", status(func(s InferenceSetStatus) bool {
		cond := meta.FindStatusCondition(s.Conditions, ConditionReady)
		return s.Replicas == 2 && s.ReadyReplicas == 0 && s.Selector == "inferenceset.kaito.sh/created-by=phi-4-mini" &&
			cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == ReasonNotReady &&
			strings.HasPrefix(cond.Message, "inferenceset is not ready, 0/2 replicas are ready")
	}))
	markReady("phi-4-mini-0")
	markReady("phi-4-mini-1")
	eventually("Ready", status(func(s InferenceSetStatus) bool {
		return s.ReadyReplicas == 2 && meta.IsStatusConditionTrue(s.Conditions, ConditionReady)
	}))

	// The HPA scales through the scale subresource, and reads the selector there.
	scale := &autoscalingv1.Scale{}
	must(c.SubResource("scale").Get(ctx, mustGet(t, c, ctx, isKey), scale))
	if scale.Spec.Replicas != 2 || scale.Status.Selector != "inferenceset.kaito.sh/created-by=phi-4-mini" {
		t.Errorf("scale subresource: %+v", scale)
	}
	setScale := func(n int32) {
		t.Helper()
		s := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: n}}
		must(c.SubResource("scale").Update(ctx, mustGet(t, c, ctx, isKey), client.WithSubResourceBody(s)))
	}
	setScale(4)
	eventually("scale up to four", hasReplicas("phi-4-mini-0", "phi-4-mini-1", "phi-4-mini-2", "phi-4-mini-3"))
	markReady("phi-4-mini-2")

	// Replica 3 does not fit: the scheduler leaves its pod Pending, and status says why.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "models", Name: "phi-4-mini-3-0",
		Labels: map[string]string{LabelCreatedBy: "phi-4-mini", LabelWorkspace: "phi-4-mini-3"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "m", Image: "stackd:test"}}}}
	must(c.Create(ctx, pod))
	pod.Status.Phase = corev1.PodPending
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: "Unschedulable", Message: "0/3 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."}}
	must(c.Status().Update(ctx, pod))
	eventually("the Pending reason in status", status(func(s InferenceSetStatus) bool {
		cond := meta.FindStatusCondition(s.Conditions, ConditionReady)
		return s.Replicas == 4 && s.ReadyReplicas == 3 && cond != nil && cond.Status == metav1.ConditionFalse &&
			strings.Contains(cond.Message, "3/4 replicas are ready") &&
			strings.Contains(cond.Message, "phi-4-mini-3-0 Pending (Unschedulable: 0/3 nodes are available: 2 Insufficient nvidia.com/gpu)")
	}))

	eventually("events for kubectl describe", func() (bool, string) {
		var l eventsv1.EventList
		must(c.List(ctx, &l, client.InNamespace("models")))
		var reasons []string
		for _, e := range l.Items {
			if e.Regarding.Name == "phi-4-mini" {
				reasons = append(reasons, e.Reason)
			}
		}
		return slices.Contains(reasons, "ReplicaCreated"), fmt.Sprint(reasons)
	})

	// Scale down removes the newest replicas, with their Services.
	setScale(1)
	eventually("scale down to one", hasReplicas("phi-4-mini-0"))
	eventually("Services of removed replicas gone", func() (bool, string) {
		var l corev1.ServiceList
		must(c.List(ctx, &l, client.InNamespace("models")))
		var names []string
		for _, s := range l.Items {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		return slices.Equal(names, []string{"phi-4-mini-0", "phi-4-mini-0-headless"}), fmt.Sprint(names)
	})
	eventually("status after scale down", status(func(s InferenceSetStatus) bool {
		return s.Replicas == 1 && s.ReadyReplicas == 1 && meta.IsStatusConditionTrue(s.Conditions, ConditionReady)
	}))

	// A new latency profile rolls the replica's pod template.
	var sts appsv1.StatefulSet
	must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "phi-4-mini-0"}, &sts))
	oldHash := sts.Annotations[annotationTemplateHash]
	// The controller writes status concurrently, so spec updates retry on conflict.
	setProfile := func(p string) {
		t.Helper()
		must(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := mustGet(t, c, ctx, isKey)
			cur.Spec.Template.Metadata.Annotations = map[string]string{AnnotationLatencyProfile: p}
			return c.Update(ctx, cur)
		}))
	}
	setProfile("70b-tp8")
	// First a surge replica, so one replica keeps serving while replica 0 restarts; then
	// replica 0 rolls; then the surge goes.
	eventually("a surge replica", hasReplicas("phi-4-mini-0", "phi-4-mini-1"))
	must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "phi-4-mini-0"}, &sts))
	if sts.Annotations[annotationTemplateHash] != oldHash {
		t.Fatal("replica 0 rolled before the surge replica was ready")
	}
	markReady("phi-4-mini-1")
	eventually("new template rolled out", func() (bool, string) {
		must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "phi-4-mini-0"}, &sts))
		args := sts.Spec.Template.Spec.Containers[0].Args
		return sts.Annotations[annotationTemplateHash] != oldHash && slices.Contains(args, "70b-tp8"), fmt.Sprint(args)
	})
	// Replica 0 restarts (its StatefulSet status lags the new template): the surge stays.
	time.Sleep(500 * time.Millisecond)
	if ok, why := hasReplicas("phi-4-mini-0", "phi-4-mini-1")(); !ok {
		t.Fatalf("surge removed while the rolled replica restarts: %s", why)
	}
	markReady("phi-4-mini-0")
	eventually("surge removed", hasReplicas("phi-4-mini-0"))

	// A profile the simulator does not know is reported, not crash-looped.
	setProfile("b200")
	eventually("failed condition", status(func(s InferenceSetStatus) bool {
		cond := meta.FindStatusCondition(s.Conditions, ConditionReady)
		return cond != nil && cond.Reason == ReasonFailed && strings.Contains(cond.Message, "b200")
	}))

	// Deleting the InferenceSet leaves its replicas to the garbage collector (owner references).
	must(c.Delete(ctx, mustGet(t, c, ctx, isKey)))
	eventually("InferenceSet gone", func() (bool, string) {
		err := c.Get(ctx, isKey, &InferenceSet{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if !metav1.IsControlledBy(&sts, &InferenceSet{ObjectMeta: metav1.ObjectMeta{UID: sts.OwnerReferences[0].UID}}) {
		t.Errorf("replica not controlled by its InferenceSet: %v", sts.OwnerReferences)
	}
}

func mustGet(t *testing.T, c client.Client, ctx context.Context, key types.NamespacedName) *InferenceSet {
	t.Helper()
	var is InferenceSet
	if err := c.Get(ctx, key, &is); err != nil {
		t.Fatal(err)
	}
	return &is
}
