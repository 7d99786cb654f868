package authz

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The APIKey API as llm-gateway-auth's consumers use it: kaito.sh/v1alpha1, kind APIKey,
// namespaced, an empty spec meaning "generate a random key" (kaito-keda-auth-facts §4.2). The
// status is this implementation's own; upstream's is not known.
var (
	GroupVersion  = schema.GroupVersion{Group: "kaito.sh", Version: "v1alpha1"}
	schemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &APIKey{}, &APIKeyList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})
	// AddToScheme registers APIKey and APIKeyList.
	AddToScheme = schemeBuilder.AddToScheme
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
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   APIKeySpec   `json:"spec,omitempty"`
	Status APIKeyStatus `json:"status,omitempty"`
}

// APIKeySpec is empty: the key is generated, never supplied.
type APIKeySpec struct{}

// APIKeyStatus reports where the key lives and whether it is usable.
type APIKeyStatus struct {
	// SecretName is the Secret holding the key under DataKey.
	SecretName string `json:"secretName,omitempty"`
	// ObservedGeneration is the generation the status describes.
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// APIKeyList is a list of APIKeys.
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}

// DeepCopyInto copies a into out.
func (a *APIKey) DeepCopyInto(out *APIKey) {
	*out = *a
	out.TypeMeta = a.TypeMeta
	a.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec = a.Spec
	out.Status = a.Status
	if a.Status.Conditions != nil {
		out.Status.Conditions = make([]metav1.Condition, len(a.Status.Conditions))
		for i := range a.Status.Conditions {
			a.Status.Conditions[i].DeepCopyInto(&out.Status.Conditions[i])
		}
	}
}

// DeepCopy returns a copy of a.
func (a *APIKey) DeepCopy() *APIKey {
	if a == nil {
		return nil
	}
	out := new(APIKey)
	a.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (a *APIKey) DeepCopyObject() runtime.Object { return a.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *APIKeyList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &APIKeyList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]APIKey, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
