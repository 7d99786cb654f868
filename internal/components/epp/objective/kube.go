package objective

import (
	"context"
	"log/slog"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// Watcher keeps a Store equal to the InferenceObjectives of one namespace that reference one
// InferencePool, with an informer.
//
// The CRD is optional: until the API server serves inferenceobjectives the watcher only checks
// again every RecheckInterval, so a cluster without the CRD gets priority 0 for every request
// instead of a picker that never becomes ready or a log full of failed lists.
type Watcher struct {
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	Namespace string
	PoolName  string
	// PoolGroup is the InferencePool's API group (default inference.networking.k8s.io).
	PoolGroup string
	// RecheckInterval is how often to look for the CRD while it is missing (default 30s).
	RecheckInterval time.Duration
	Log             *slog.Logger
}

// Run blocks until ctx ends; it never fails the picker.
func (w *Watcher) Run(ctx context.Context, store *Store) error {
	log := w.Log
	if log == nil {
		log = slog.Default()
	}
	every := w.RecheckInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	group := w.PoolGroup
	if group == "" {
		group = DefaultPoolGroup
	}
	warned := false
	for !w.served(log) {
		if !warned {
			log.Info("InferenceObjective CRD not served; every request gets priority 0 until it is",
				"resource", GVR.String(), "recheck", every.String())
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}

	inf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.Dynamic, 0, w.Namespace, nil).ForResource(GVR).Informer()
	apply := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		o, err := FromUnstructured(u)
		if err != nil {
			log.Warn("ignoring InferenceObjective", "error", err.Error())
			store.Delete(u.GetName())
			return
		}
		if o.For(group, w.PoolName) {
			store.Set(o.Name, o.PriorityValue())
		} else {
			store.Delete(o.Name) // e.g. its poolRef moved to another pool
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    apply,
		UpdateFunc: func(_, obj any) { apply(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				store.Delete(u.GetName())
			}
		},
	}); err != nil {
		log.Warn("watch InferenceObjectives", "error", err.Error())
		return nil
	}
	log.Info("watching InferenceObjectives", "namespace", w.Namespace, "pool", w.PoolName)
	inf.Run(ctx.Done())
	return nil
}

// served reports whether the API server serves InferenceObjectives.
func (w *Watcher) served(log *slog.Logger) bool {
	list, err := w.Discovery.ServerResourcesForGroupVersion(GVR.GroupVersion().String())
	if err != nil {
		if !apierrors.IsNotFound(err) {
			log.Debug("discovery of InferenceObjective", "error", err.Error())
		}
		return false
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == Resource })
}
