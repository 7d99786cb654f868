package scaler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/keda"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

// startAPIServer runs a real kube-apiserver with the InferenceSet CRD (this repository's) and
// KEDA's CRDs (from the KEDA module), and installs manifests/offline/scaler.yaml.
func startAPIServer(t *testing.T) *rest.Config {
	t.Helper()
	assets := apiservertest.BinaryDir(t)
	data, err := fs.ReadFile(manifests.CRDs, "kaito.sh_inferencesets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	isCRD := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, isCRD); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kedaCRDs, err := keda.CRDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crds := []*apiextensionsv1.CustomResourceDefinition{isCRD}
	for _, u := range kedaCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
			t.Fatal(err)
		}
		crds = append(crds, crd)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDInstallOptions: envtest.CRDInstallOptions{CRDs: crds}}
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
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	for _, name := range []string{"keda", "models"} {
		ns.SetName(name)
		if err := kc.ApplyObject(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := keda.Render("scaler.yaml", keda.Values{StackdImage: "stackd:test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatalf("applying manifests/offline/scaler.yaml: %v", err)
	}
	return cfg
}

func newInferenceSet(name string, annotations map[string]string) *unstructured.Unstructured {
	is := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"replicas":      int64(1),
		"labelSelector": map[string]any{"matchLabels": map[string]any{"apps": name}},
		"template":      map[string]any{"inference": map[string]any{"preset": map[string]any{"name": "phi-4-mini-instruct"}}},
	}}}
	is.SetGroupVersionKind(InferenceSetGVK)
	is.SetNamespace("models")
	is.SetName(name)
	is.SetAnnotations(annotations)
	return is
}

// TestControllerAgainstAPIServer runs the certificate bootstrap and the ScaledObject
// controller with exactly the RBAC of the scaler's manifest (impersonating its service
// account) against a real kube-apiserver.
func TestControllerAgainstAPIServer(t *testing.T) {
	cfg := startAPIServer(t)
	asScaler := rest.CopyConfig(cfg)
	asScaler.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:keda:keda-kaito-scaler-sa"}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Certificates: made once, then reused.
	direct, err := client.New(asScaler, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	first, err := EnsureCertificates(ctx, direct, "keda")
	if err != nil {
		t.Fatalf("first EnsureCertificates: %v", err)
	}
	second, err := EnsureCertificates(ctx, direct, "keda")
	if err != nil {
		t.Fatalf("second EnsureCertificates: %v", err)
	}
	if string(first.Certificates[0].Certificate[0]) != string(second.Certificates[0].Certificate[0]) {
		t.Fatal("certificates were re-issued although the stored ones are valid")
	}
	for i := 0; i < 2; i++ {
		if err := EnsureTriggerAuthentication(ctx, direct); err != nil {
			t.Fatalf("EnsureTriggerAuthentication: %v", err)
		}
	}

	mgr, err := ctrl.NewManager(asScaler, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		// Controller names are unique per process; `go test -count 2` builds the same one again.
		Controller: config.Controller{SkipNameValidation: ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("keda-kaito-scaler"),
		Target: Target{ScalerAddress: Address("keda"), AuthName: AuthName}, Timing: TimingFast}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { mcancel(); <-done })

	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	scaled := map[string]string{AnnotationAutoProvision: "true", AnnotationThreshold: "10", AnnotationMinReplicas: "1", AnnotationMaxReplicas: "4"}
	is := newInferenceSet("phi-4-mini", scaled)
	if err := admin.Create(ctx, is); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "models", Name: "phi-4-mini"}
	getSO := func(key types.NamespacedName) (*unstructured.Unstructured, error) {
		so := &unstructured.Unstructured{}
		so.SetGroupVersionKind(ScaledObjectGVK)
		return so, admin.Get(ctx, key, so)
	}
	eventually(t, 30*time.Second, "ScaledObject created", func() (bool, string) {
		so, err := getSO(key)
		if err != nil {
			return false, err.Error()
		}
		max, _, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount")
		return IsManaged(so) && max == 4 && metav1.IsControlledBy(so, is), fmt.Sprintf("max %d managed %v", max, IsManaged(so))
	})

	// A changed annotation is applied to the ScaledObject.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"scaledobject.kaito.sh/threshold":"3"}}}`))
	if err := admin.Patch(ctx, is, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "threshold updated", func() (bool, string) {
		so, err := getSO(key)
		if err != nil {
			return false, err.Error()
		}
		trig, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
		th, _, _ := unstructured.NestedString(trig[0].(map[string]any), "metadata", "threshold")
		return th == "3", th
	})

	// A ScaledObject deleted by hand is put back.
	so, _ := getSO(key)
	if err := admin.Delete(ctx, so); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ScaledObject restored", func() (bool, string) {
		so2, err := getSO(key)
		return err == nil && so2.GetUID() != so.GetUID(), "not yet"
	})

	// Switching autoscaling off removes the ScaledObject and says so.
	patch = client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"scaledobject.kaito.sh/auto-provision":"false"}}}`))
	if err := admin.Patch(ctx, is, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ScaledObject cleaned up", func() (bool, string) {
		_, err := getSO(key)
		return apierrors.IsNotFound(err), "still there"
	})
	waitEvent(t, ctx, admin, "phi-4-mini", "ScaledObjectCleanedUp")

	// Invalid annotations: no ScaledObject, an event naming the problem.
	bad := newInferenceSet("bad", map[string]string{AnnotationAutoProvision: "true", AnnotationThreshold: "10", AnnotationMinReplicas: "5", AnnotationMaxReplicas: "2"})
	if err := admin.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ctx, admin, "bad", "InvalidReplicaRange")
	if _, err := getSO(types.NamespacedName{Namespace: "models", Name: "bad"}); !apierrors.IsNotFound(err) {
		t.Fatalf("ScaledObject for an invalid InferenceSet: %v", err)
	}

	// A hand-written ScaledObject of the same name is never taken over.
	mine := newInferenceSet("mine", scaled)
	foreign := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"scaleTargetRef": map[string]any{"name": "mine"},
		"triggers":       []any{map[string]any{"type": "cpu", "metricType": "Utilization", "metadata": map[string]any{"value": "50"}}},
	}}}
	foreign.SetGroupVersionKind(ScaledObjectGVK)
	foreign.SetNamespace("models")
	foreign.SetName("mine")
	if err := admin.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ctx, admin, "mine", "ScaledObjectConflict")
	if so, err := getSO(types.NamespacedName{Namespace: "models", Name: "mine"}); err != nil || IsManaged(so) {
		t.Fatalf("hand-written ScaledObject taken over: %v", err)
	}

	// The gRPC side's view of the cluster, read through the scaler's RBAC.
	src := &ClusterSource{Client: mgr.GetClient(), MetricsPort: DefaultMetricsPort}
	isReady := newInferenceSet("phi-4-mini", nil)
	if err := admin.Get(ctx, key, isReady); err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedSlice(isReady.Object, []any{map[string]any{"type": ConditionReady, "status": "True",
		"lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "inferencesetReady", "message": "1/1 replicas are ready"}}, "status", "conditions")
	if err := admin.Status().Update(ctx, isReady); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Ready seen", func() (bool, string) {
		ok, err := src.Ready(ctx, key)
		return ok && err == nil, "not ready"
	})
	if _, err := src.Ready(ctx, types.NamespacedName{Namespace: "models", Name: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Ready(missing) err = %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "models", Name: "phi-4-mini-0-0", Labels: map[string]string{LabelCreatedBy: "phi-4-mini"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sim", Image: "stackd:test"}}},
	}
	if err := admin.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.7", PodIPs: []corev1.PodIP{{IP: "10.244.1.7"}}}
	if err := admin.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pod endpoint", func() (bool, string) {
		eps, err := src.Endpoints(ctx, key)
		if err != nil {
			return false, err.Error()
		}
		return len(eps) == 1 && eps[0].URL == "http://10.244.1.7:5000/metrics", "endpoints"
	})
}

func waitEvent(t *testing.T, ctx context.Context, c client.Client, object, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "event "+reason+" on "+object, func() (bool, string) {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace("models")); err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.Regarding.Name == object && e.Reason == reason {
				return true, ""
			}
		}
		return false, "none yet"
	})
}
