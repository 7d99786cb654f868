package kube

import "k8s.io/client-go/tools/cache"

// Changes turns informer events into at most one pending wake-up: controllers that recompute
// a whole view from listers need to know only that something changed, and a burst of events
// must cost one recomputation, not one per event.
type Changes struct{ c chan struct{} }

// NewChanges returns an empty signal.
func NewChanges() *Changes { return &Changes{c: make(chan struct{}, 1)} }

// Notify records a change; it never blocks.
func (s *Changes) Notify() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// C receives once per batch of changes.
func (s *Changes) C() <-chan struct{} { return s.c }

// Handler notifies on every add, update and delete of an informer.
func (s *Changes) Handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.Notify() },
		UpdateFunc: func(any, any) { s.Notify() },
		DeleteFunc: func(any) { s.Notify() },
	}
}
