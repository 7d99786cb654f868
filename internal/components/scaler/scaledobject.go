package scaler

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kinds this package reads and writes, as unstructured objects: the InferenceSet types are
// owned by internal/components/inferenceset and KEDA's by the KEDA module, and neither is
// worth importing for the handful of fields used here.
var (
	InferenceSetGVK                 = schema.GroupVersionKind{Group: "kaito.sh", Version: "v1alpha1", Kind: "InferenceSet"}
	ScaledObjectGVK                 = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	ClusterTriggerAuthenticationGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ClusterTriggerAuthentication"}
)

// TriggerName is the name of the one external trigger; KEDA exposes the metric to the HPA
// as s0-<metricName>.
const TriggerName = "keda-kaito-scaler"

// Timing is how fast KEDA and the HPA react: the ScaledObject's polling interval and the
// HPA behavior it passes through.
type Timing struct {
	Name                     string
	PollingIntervalSeconds   int64
	UpStabilizationSeconds   int64
	UpPeriodSeconds          int64 // at most one replica added per period
	UpTolerance              string
	DownStabilizationSeconds int64
	DownPeriodSeconds        int64 // at most one replica removed per period
	DownTolerance            string
}

// Timing presets. Upstream is keda-kaito-scaler v0.5's (facts §3.4, §5): +1 replica per
// 5 minutes after a minute above threshold, -1 per 10 minutes after five below. Fast keeps
// the same shape at demo speed, so a sandbox scales within well under a minute.
var (
	TimingUpstream = Timing{Name: "upstream", PollingIntervalSeconds: 15,
		UpStabilizationSeconds: 60, UpPeriodSeconds: 300, UpTolerance: "0.1",
		DownStabilizationSeconds: 300, DownPeriodSeconds: 600, DownTolerance: "0.5"}
	TimingFast = Timing{Name: "fast", PollingIntervalSeconds: 5,
		UpStabilizationSeconds: 0, UpPeriodSeconds: 15, UpTolerance: "0.1",
		DownStabilizationSeconds: 30, DownPeriodSeconds: 15, DownTolerance: "0.5"}
)

// TimingByName returns a preset by name.
func TimingByName(name string) (Timing, error) {
	for _, t := range []Timing{TimingUpstream, TimingFast} {
		if t.Name == name {
			return t, nil
		}
	}
	return Timing{}, fmt.Errorf("unknown scaling timing %q (want upstream or fast)", name)
}

// Target is where the generated triggers send KEDA.
type Target struct {
	// ScalerAddress is host:port of this scaler's gRPC Service, as KEDA dials it.
	ScalerAddress string
	// AuthName is the ClusterTriggerAuthentication carrying the mTLS material.
	AuthName string
}

// DesiredScaledObject builds the ScaledObject for an InferenceSet: same name and namespace,
// controlled by the InferenceSet so that deleting it removes the ScaledObject (and KEDA's HPA).
func DesiredScaledObject(is *unstructured.Unstructured, cfg Config, tgt Target, tm Timing) *unstructured.Unstructured {
	so := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"scaleTargetRef": map[string]any{
				"apiVersion": is.GetAPIVersion(),
				"kind":       is.GetKind(),
				"name":       is.GetName(),
			},
			"pollingInterval": tm.PollingIntervalSeconds,
			"minReplicaCount": int64(cfg.MinReplicas),
			"maxReplicaCount": int64(cfg.MaxReplicas),
			"advanced": map[string]any{
				"horizontalPodAutoscalerConfig": map[string]any{
					"behavior": map[string]any{
						"scaleUp":   rules(tm.UpStabilizationSeconds, tm.UpPeriodSeconds, tm.UpTolerance),
						"scaleDown": rules(tm.DownStabilizationSeconds, tm.DownPeriodSeconds, tm.DownTolerance),
					},
				},
			},
			"triggers": []any{map[string]any{
				"type": "external",
				"name": TriggerName,
				// The scaler reports the sum over replicas; AverageValue makes the HPA divide it
				// by the current replica count, so desired = ceil(sum / threshold).
				"metricType": "AverageValue",
				"metadata": map[string]any{
					"scalerAddress":         tgt.ScalerAddress,
					"inferenceSetName":      is.GetName(),
					"inferenceSetNamespace": is.GetNamespace(),
					"metricName":            cfg.MetricName,
					"threshold":             strconv.FormatFloat(cfg.Threshold, 'f', -1, 64),
				},
				"authenticationRef": map[string]any{
					"name": tgt.AuthName,
					"kind": "ClusterTriggerAuthentication",
				},
			}},
		},
	}}
	so.SetGroupVersionKind(ScaledObjectGVK)
	so.SetName(is.GetName())
	so.SetNamespace(is.GetNamespace())
	so.SetAnnotations(map[string]string{AnnotationManagedBy: ManagedByValue})
	so.SetLabels(map[string]string{"app.kubernetes.io/managed-by": ManagedByValue})
	controller, block := true, true
	so.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: is.GetAPIVersion(), Kind: is.GetKind(), Name: is.GetName(), UID: is.GetUID(),
		Controller: &controller, BlockOwnerDeletion: &block,
	}})
	return so
}

func rules(stabilization, period int64, tolerance string) map[string]any {
	return map[string]any{
		"stabilizationWindowSeconds": stabilization,
		"selectPolicy":               "Max",
		"policies":                   []any{map[string]any{"type": "Pods", "value": int64(1), "periodSeconds": period}},
		// Honoured only where the HPAConfigurableTolerance gate is on (beta from Kubernetes
		// 1.35); older API servers drop it, and the default 10 % applies.
		"tolerance": tolerance,
	}
}

// IsManaged reports whether a ScaledObject was made by this controller.
func IsManaged(so *unstructured.Unstructured) bool {
	return so.GetAnnotations()[AnnotationManagedBy] == ManagedByValue
}
