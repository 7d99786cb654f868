package observe

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
	"github.com/inference-sandbox/sandbox/manifests"
)

// world is a real kube-apiserver holding what a sandbox's cluster would for some models, with
// the model pods played by real simulators on loopback. Nothing runs pods in envtest, so the
// test writes the status the kubelet and scheduler would.
type world struct {
	cfg *rest.Config
	cs  kubernetes.Interface
	dyn dynamic.Interface
	ctx context.Context
}

func startWorld(t testing.TB) *world {
	t.Helper()
	data, err := fs.ReadFile(manifests.CRDs, "kaito.sh_inferencesets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatal(err)
	}
	crlog.SetLogger(logr.Discard()) // envtest logs through controller-runtime
	cfg := apiservertest.Start(t, []*apiextensionsv1.CustomResourceDefinition{crd})
	w := &world{ctx: context.Background(), cfg: cfg}
	if w.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if w.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	must(t, create(w.ctx, w.cs.CoreV1().Namespaces(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stacktest.Namespace}}))
	for _, name := range []string{"w1", "w2"} {
		n, err := w.cs.CoreV1().Nodes().Create(w.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		must(t, err)
		n.Status.Capacity = corev1.ResourceList{mocker.GPUResource: resource.MustParse("4")}
		n.Status.Allocatable = n.Status.Capacity
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
		_, err = w.cs.CoreV1().Nodes().UpdateStatus(w.ctx, n, metav1.UpdateOptions{})
		must(t, err)
	}
	return w
}

func create[T any](ctx context.Context, c interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
}, obj T) error {
	_, err := c.Create(ctx, obj, metav1.CreateOptions{})
	return err
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// addModel creates an autoscaled InferenceSet and its KEDA-style HPA.
func (w *world) addModel(t testing.TB, name string, replicas int) {
	t.Helper()
	is := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kaito.sh/v1alpha1", "kind": "InferenceSet",
		"metadata": map[string]any{"name": name, "namespace": stacktest.Namespace, "annotations": map[string]any{
			annotationAutoProvision: "true", annotationMinReplicas: "1", annotationMaxReplicas: "4",
			annotationThreshold: "10", annotationMetricName: defaultMetricName}},
		"spec": map[string]any{"replicas": int64(replicas),
			"labelSelector": map[string]any{"matchLabels": map[string]any{inferenceset.LabelCreatedBy: name}},
			"template": map[string]any{"inference": map[string]any{
				"preset": map[string]any{"name": name}}}},
	}}
	_, err := w.dyn.Resource(inferenceSetGVR).Namespace(stacktest.Namespace).Create(w.ctx, is, metav1.CreateOptions{})
	must(t, err)
	one := int32(1)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-" + name, Namespace: stacktest.Namespace},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "kaito.sh/v1alpha1", Kind: "InferenceSet", Name: name},
			MinReplicas:    &one, MaxReplicas: 4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "s0-" + name},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(10, resource.DecimalSI)},
			}}},
		},
	}
	must(t, create(w.ctx, w.cs.AutoscalingV2().HorizontalPodAutoscalers(stacktest.Namespace), hpa))
}

// setMetric writes the HPA's observed value of its external metric, as the HPA controller does.
func (w *world) setMetric(t testing.TB, model string, v float64) { w.setHPAStatus(t, model, v, 0) }

// setHPAStatus writes the HPA's reading and the replica count it decided on.
func (w *world) setHPAStatus(t testing.TB, model string, v float64, desired int32) {
	t.Helper()
	h, err := w.cs.AutoscalingV2().HorizontalPodAutoscalers(stacktest.Namespace).Get(w.ctx, "keda-hpa-"+model, metav1.GetOptions{})
	must(t, err)
	q := resource.MustParse(fmt.Sprintf("%g", v))
	h.Status.CurrentMetrics = []autoscalingv2.MetricStatus{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{
		Metric: autoscalingv2.MetricIdentifier{Name: "s0-" + model}, Current: autoscalingv2.MetricValueStatus{AverageValue: &q}}}}
	h.Status.DesiredReplicas = desired
	_, err = w.cs.AutoscalingV2().HorizontalPodAutoscalers(stacktest.Namespace).UpdateStatus(w.ctx, h, metav1.UpdateOptions{})
	must(t, err)
}

// scale sets the InferenceSet's spec.replicas, as the HPA does through the scale subresource.
func (w *world) scale(t testing.TB, model string, n int) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	_, err := w.dyn.Resource(inferenceSetGVR).Namespace(stacktest.Namespace).Patch(w.ctx, model, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	must(t, err)
}

// addPod creates a model pod; node "" leaves it Pending and unschedulable for want of GPUs.
func (w *world) addPod(t testing.TB, model, name, node, ip string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: stacktest.Namespace, Labels: map[string]string{inferenceset.LabelCreatedBy: model}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "model", Image: "sim",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{mocker.GPUResource: resource.MustParse("1")},
				Limits: corev1.ResourceList{mocker.GPUResource: resource.MustParse("1")}}}}},
	}
	p, err := w.cs.CoreV1().Pods(stacktest.Namespace).Create(w.ctx, p, metav1.CreateOptions{})
	must(t, err)
	if node == "" {
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available"}}
	} else {
		p.Status.Phase, p.Status.PodIP = corev1.PodRunning, ip
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	_, err = w.cs.CoreV1().Pods(stacktest.Namespace).UpdateStatus(w.ctx, p, metav1.UpdateOptions{})
	must(t, err)
}

// stackFetch reads each pod's metrics from the simulator standing in for it.
func stackFetch(s *stacktest.Stack) podmetrics.FetchFunc {
	urls := map[string]string{}
	for _, m := range s.Models {
		for _, p := range m.Pods {
			urls[p.Name] = p.URL
		}
	}
	return podmetrics.HTTPFetch(&http.Client{Timeout: 5 * time.Second}, func(t podmetrics.Target) string { return urls[t.Pod] })
}

// pickerStreams opens the real pickers' decision streams on loopback; models not in streaming
// answer as an upstream picker without a decision record does (404).
func pickerStreams(s *stacktest.Stack, streaming map[string]bool) OpenStream {
	return func(ctx context.Context, namespace, model string, backlog int) (io.ReadCloser, error) {
		m := s.Models[model]
		if m == nil || !streaming[model] {
			return nil, fmt.Errorf("GET /decisions: 404 Not Found")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("http://%s/decisions?follow=1&limit=%d", m.Picker.MetricsAddr(), backlog), nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET /decisions: %s", resp.Status)
		}
		return resp.Body, nil
	}
}

// chat sends n non-streamed requests for model through the stack's gateway.
func chat(t testing.TB, url, model string, n int) {
	t.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"request %d about the same long shared prefix"}],"max_tokens":4}`, model, i)
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+stacktest.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d for %s: %s %s", i, model, resp.Status, b)
		}
	}
}
