// Package objective gives the endpoint picker the priority of each InferenceObjective of its
// pool (llm-d-facts §4.2): a request names one in the x-gateway-inference-objective header, and a
// negative priority makes it sheddable when the pool is saturated (§2.8).
package objective

import (
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// API coordinates of InferenceObjective.
const (
	Group    = "inference.networking.x-k8s.io"
	Version  = "v1alpha2"
	Resource = "inferenceobjectives"
	Kind     = "InferenceObjective"
	// DefaultPoolGroup and DefaultPoolKind are what an unset poolRef group and kind mean.
	DefaultPoolGroup = "inference.networking.k8s.io"
	DefaultPoolKind  = "InferencePool"
)

// GVR is the InferenceObjective resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// InferenceObjective is the part of the object the picker reads.
type InferenceObjective struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              Spec `json:"spec"`
}

// Spec is InferenceObjective's spec.
type Spec struct {
	// Priority: higher is more important, unset is 0, negative is sheddable.
	Priority *int    `json:"priority,omitempty"`
	PoolRef  PoolRef `json:"poolRef"`
}

// PoolRef names the InferencePool the objective belongs to.
type PoolRef struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Name  string `json:"name"`
}

// FromUnstructured converts a watched object.
func FromUnstructured(u *unstructured.Unstructured) (*InferenceObjective, error) {
	var o InferenceObjective
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
		return nil, fmt.Errorf("InferenceObjective %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &o, nil
}

// PriorityValue is the objective's effective priority.
func (o *InferenceObjective) PriorityValue() int {
	if o.Spec.Priority == nil {
		return 0
	}
	return *o.Spec.Priority
}

// For reports whether the objective references the pool name of API group group.
func (o *InferenceObjective) For(group, name string) bool {
	g, k := o.Spec.PoolRef.Group, o.Spec.PoolRef.Kind
	if g == "" {
		g = DefaultPoolGroup
	}
	if k == "" {
		k = DefaultPoolKind
	}
	return g == group && k == DefaultPoolKind && o.Spec.PoolRef.Name == name
}

// Lookup answers the priority of a named objective.
type Lookup interface {
	// Priority returns the objective's priority and whether the objective is known.
	Priority(name string) (int, bool)
}

// Store is the set of known objectives of one pool, by name. The zero value is not usable; use
// NewStore.
type Store struct {
	mu     sync.RWMutex
	byName map[string]int
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{byName: map[string]int{}} }

// Set records an objective's priority.
func (s *Store) Set(name string, priority int) {
	s.mu.Lock()
	s.byName[name] = priority
	s.mu.Unlock()
}

// Delete forgets an objective.
func (s *Store) Delete(name string) {
	s.mu.Lock()
	delete(s.byName, name)
	s.mu.Unlock()
}

// Priority implements Lookup.
func (s *Store) Priority(name string) (int, bool) {
	s.mu.RLock()
	p, ok := s.byName[name]
	s.mu.RUnlock()
	return p, ok
}

// Len is the number of known objectives.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byName)
}
