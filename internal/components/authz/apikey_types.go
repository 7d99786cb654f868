//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 object paths=.

package authz

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// The APIKey API as llm-gateway-auth's consumers use it: kaito.sh/v1alpha1, kind APIKey,
// namespaced, an empty spec meaning "generate a random key" (kaito-keda-auth-facts §4.2). The
// status is this implementation's own; upstream's is not known.
var (
	GroupVersion = schema.GroupVersion{Group: "kaito.sh", Version: "v1alpha1"}
	// AddToScheme registers APIKey and APIKeyList.
	AddToScheme = (&scheme.Builder{GroupVersion: GroupVersion}).Register(&APIKey{}, &APIKeyList{}).AddToScheme
)

const (
	// SecretName is the Secret every APIKey materialises in its namespace, and DataKey the key
	// in it that holds the bearer token; both are fixed upstream (kaito-keda-auth-facts §4.3).
	SecretName = "llm-api-key"
	DataKey    = "apiKey"

	// ConditionReady is True once the Secret holds a key the authz server will accept.
	ConditionReady = "Ready"
)

// APIKey asks the operator for a namespace's API key.
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   APIKeySpec   `json:"spec,omitempty"`
	Status APIKeyStatus `json:"status,omitempty"`
}

// APIKeySpec is empty: the key is generated, never supplied.
// +kubebuilder:object:generate=true
type APIKeySpec struct{}

// APIKeyStatus reports where the key lives and whether it is usable.
// +kubebuilder:object:generate=true
type APIKeyStatus struct {
	// SecretName is the Secret holding the key under DataKey.
	SecretName string `json:"secretName,omitempty"`
	// ObservedGeneration is the generation the status describes.
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// APIKeyList is a list of APIKeys.
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}
