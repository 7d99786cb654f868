package scaler

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func TestDesiredScaledObject(t *testing.T) {
	is := &unstructured.Unstructured{}
	is.SetGroupVersionKind(InferenceSetGVK)
	is.SetName("phi-4-mini")
	is.SetNamespace("models")
	is.SetUID(types.UID("uid-1"))
	cfg := Config{Threshold: 10, MetricName: DefaultMetricName, MinReplicas: 1, MaxReplicas: 4}
	so := DesiredScaledObject(is, cfg, Target{ScalerAddress: Address("keda"), AuthName: AuthName}, TimingUpstream)

	if so.GetName() != "phi-4-mini" || so.GetNamespace() != "models" || !IsManaged(so) {
		t.Fatalf("identity: %s/%s managed=%v", so.GetNamespace(), so.GetName(), IsManaged(so))
	}
	owners := so.GetOwnerReferences()
	if len(owners) != 1 || owners[0].UID != "uid-1" || owners[0].Kind != "InferenceSet" || owners[0].Controller == nil || !*owners[0].Controller {
		t.Fatalf("owner references: %+v", owners)
	}
	str := func(path ...string) string {
		v, _, _ := unstructured.NestedString(so.Object, path...)
		return v
	}
	i64 := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(so.Object, path...)
		return v
	}
	if str("spec", "scaleTargetRef", "apiVersion") != "kaito.sh/v1alpha1" || str("spec", "scaleTargetRef", "kind") != "InferenceSet" {
		t.Fatalf("scaleTargetRef: %v", so.Object["spec"])
	}
	if i64("spec", "minReplicaCount") != 1 || i64("spec", "maxReplicaCount") != 4 || i64("spec", "pollingInterval") != 15 {
		t.Fatalf("replica range/polling: %v", so.Object["spec"])
	}
	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if len(triggers) != 1 {
		t.Fatalf("triggers: %v", triggers)
	}
	trig := triggers[0].(map[string]any)
	md := trig["metadata"].(map[string]any)
	want := map[string]any{"scalerAddress": "keda-kaito-scaler-svc.keda.svc.cluster.local:10450", "inferenceSetName": "phi-4-mini",
		"inferenceSetNamespace": "models", "metricName": DefaultMetricName, "threshold": "10"}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("metadata %s = %v, want %v", k, md[k], v)
		}
	}
	if trig["type"] != "external" || trig["metricType"] != "AverageValue" {
		t.Errorf("trigger type %v metricType %v", trig["type"], trig["metricType"])
	}
	if ref := trig["authenticationRef"].(map[string]any); ref["name"] != AuthName || ref["kind"] != "ClusterTriggerAuthentication" {
		t.Errorf("authenticationRef %v", ref)
	}
	if got := i64("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown", "stabilizationWindowSeconds"); got != 300 {
		t.Errorf("scale-down stabilization %d, want 300", got)
	}

	fast := DesiredScaledObject(is, cfg, Target{}, TimingFast)
	if v, _, _ := unstructured.NestedInt64(fast.Object, "spec", "pollingInterval"); v >= 15 {
		t.Errorf("fast polling interval %d", v)
	}
	if _, err := TimingByName("glacial"); err == nil {
		t.Error("unknown timing accepted")
	}
}
