//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 object paths=.

package inferenceset

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// The InferenceSet API as the modeldeployment chart and keda-kaito-scaler use it
// (shared/facts/kaito-keda-auth-facts.md §1.2-1.3). Only the fields this controller acts on are
// typed; the CRD keeps the rest, and the controller never writes the spec back, so nothing is lost.
var (
	GroupVersion = schema.GroupVersion{Group: "kaito.sh", Version: "v1alpha1"}
	// AddToScheme registers InferenceSet and InferenceSetList.
	AddToScheme = (&scheme.Builder{GroupVersion: GroupVersion}).Register(&InferenceSet{}, &InferenceSetList{}).AddToScheme
)

// Labels, annotations and condition names shared with upstream KAITO and its consumers.
const (
	// LabelCreatedBy marks every replica's objects and pods with the InferenceSet name; the
	// InferencePool, the scaler and status.selector select on it.
	LabelCreatedBy = "inferenceset.kaito.sh/created-by"
	// LabelWorkspace names the replica (KAITO's Workspace) a pod belongs to.
	LabelWorkspace = "kaito.sh/workspace"
	// LabelPodIndex is set by the StatefulSet controller; the InferencePool selects index 0.
	LabelPodIndex = "apps.kubernetes.io/pod-index"

	// AnnotationLatencyProfile and AnnotationLatencyCalculator choose the simulator's latency
	// model, as the upstream gpu-node-mocker reads them (upstream-production-stack.md §4.4).
	AnnotationLatencyProfile    = "kaito.sh/latency-profile"
	AnnotationLatencyCalculator = "kaito.sh/latency-calculator"
	// AnnotationSimulatorArgs adds flags to every replica's simulator (space-separated, after
	// the defaults so they win), e.g. "--max-num-seqs 4 --kv-cache-size 96": the sandbox's own
	// knob for reproducing a benchmark's model servers; upstream KAITO has no such annotation.
	AnnotationSimulatorArgs = "sandbox.kaito.sh/simulator-args"

	// ConditionReady is upstream's InferenceSetReady condition with its reasons.
	ConditionReady    = "InferenceSetReady"
	ReasonReady       = "inferencesetReady"
	ReasonNotReady    = "inferencesetNotReady"
	ReasonFailed      = "inferencesetFailed"
	ConditionDeleting = "InferenceSetDeleting"
)

// InferenceSet runs spec.replicas identical model-server replicas.
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
type InferenceSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferenceSetSpec   `json:"spec,omitempty"`
	Status InferenceSetStatus `json:"status,omitempty"`
}

// InferenceSetSpec is the part of upstream's spec the offline controller implements.
// +kubebuilder:object:generate=true
type InferenceSetSpec struct {
	// Replicas defaults to 1 in the CRD schema; nil is treated the same way.
	Replicas      *int32                `json:"replicas,omitempty"`
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	Template      Template              `json:"template,omitempty"`
}

// Template describes each replica.
// +kubebuilder:object:generate=true
type Template struct {
	Metadata  TemplateMeta  `json:"metadata,omitempty"`
	Inference InferenceSpec `json:"inference,omitempty"`
}

// TemplateMeta is copied onto every replica.
// +kubebuilder:object:generate=true
type TemplateMeta struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// InferenceSpec names what to serve.
// +kubebuilder:object:generate=true
type InferenceSpec struct {
	Preset *Preset `json:"preset,omitempty"`
}

// Preset is a KAITO model preset; offline, its name becomes the simulator's --model.
// +kubebuilder:object:generate=true
type Preset struct {
	Name string `json:"name"`
}

// InferenceSetStatus is what the HPA (scale subresource) and keda-kaito-scaler read.
// +kubebuilder:object:generate=true
type InferenceSetStatus struct {
	// Replicas is the desired count, as upstream reports it (not the number that exist).
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
	// Selector is "inferenceset.kaito.sh/created-by=<name>"; the HPA refuses a scale target
	// without one.
	Selector           string             `json:"selector,omitempty"`
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// InferenceSetList is a list of InferenceSets.
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
type InferenceSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferenceSet `json:"items"`
}

// DesiredReplicas is spec.replicas with the API default applied.
func (is *InferenceSet) DesiredReplicas() int32 {
	if is.Spec.Replicas == nil {
		return 1
	}
	return *is.Spec.Replicas
}
