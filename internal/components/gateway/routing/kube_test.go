package routing

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

func fromYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	// Through JSON, as the API server's objects arrive: integers stay int64.
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

// The objects a modeldeployment release renders for model phi-4-mini, in upstream's shapes.
const (
	routeYAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: phi-4-mini-route, namespace: models}
spec:
  parentRefs: [{name: models-gw}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
      headers: [{type: Exact, name: X-Gateway-Model-Name, value: phi-4-mini}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: phi-4-mini-inferencepool}
`
	poolYAML = `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: phi-4-mini-inferencepool, namespace: models}
spec:
  selector: {matchLabels: {inferenceset.kaito.sh/created-by: phi-4-mini}}
  targetPorts: [{number: 5000}]
  endpointPickerRef: {name: phi-4-mini-inferencepool-epp, port: {number: 9002}, failureMode: FailOpen}
`
)

func pod(name, ip string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "models", Labels: map[string]string{"inferenceset.kaito.sh/created-by": "phi-4-mini"}},
		Status:     corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func TestInformersFollowTheCluster(t *testing.T) {
	epp := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "phi-4-mini-inferencepool-epp", Namespace: "models"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "grpc", Port: 9002}}},
	}
	cs := kubefake.NewClientset(pod("p0", "10.0.0.1", true), pod("p1", "10.0.0.2", false), epp)
	gvrs := map[schema.GroupVersionResource]string{
		HTTPRouteResource:                 "HTTPRouteList",
		datastore.PoolResource(PoolGroup): "InferencePoolList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs, fromYAML(t, routeYAML), fromYAML(t, poolYAML))
	k := &Informers{Dynamic: dyn, Clientset: cs, Gateway: gw}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	req := func() *Backend {
		r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
		r.Header.Set("X-Gateway-Model-Name", "phi-4-mini")
		d, ok := k.Snapshot().Match(r)
		if !ok {
			return nil
		}
		return d.Backend
	}
	eventually := func(what string, cond func(b *Backend) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if k.Synced() && cond(req()) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: backend is %+v", what, req())
	}
	eventually("initial sync", func(b *Backend) bool {
		return b != nil && b.Pool != nil && len(b.Pool.Endpoints) == 1 && b.Pool.Endpoints[0] == "10.0.0.1:5000" &&
			b.Pool.Picker == "10.96.0.20:9002" && b.Pool.FailureMode == FailOpen
	})

	// A pod turning ready joins the pool without a restart.
	p1 := pod("p1", "10.0.0.2", true)
	if _, err := cs.CoreV1().Pods("models").UpdateStatus(ctx, p1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("pod ready", func(b *Backend) bool { return b != nil && b.Pool != nil && len(b.Pool.Endpoints) == 2 })

	// The picker's Service going away leaves the pool without a picker (fail-open/close decides).
	if err := cs.CoreV1().Services("models").Delete(ctx, epp.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("picker Service deleted", func(b *Backend) bool { return b != nil && b.Pool != nil && b.Pool.Picker == "" })

	// Deleting the route unroutes the model.
	if err := dyn.Resource(HTTPRouteResource).Namespace("models").Delete(ctx, "phi-4-mini-route", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("route deleted", func(b *Backend) bool { return b == nil })
}
