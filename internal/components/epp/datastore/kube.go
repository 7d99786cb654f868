package datastore

import (
	"context"
	"fmt"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PoolResource returns the InferencePool resource in the given API group; v1 lives in
// inference.networking.k8s.io (llm-d-facts §4.1), which is the --pool-group default.
func PoolResource(group string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: "inferencepools"}
}

// KubeSource watches one InferencePool and the pods of its namespace with informers and
// recomputes the endpoint set on every change, so churn reaches the scheduler as fast as the
// watch delivers it.
type KubeSource struct {
	Dynamic   dynamic.Interface
	Clientset kubernetes.Interface
	Namespace string
	Name      string
	Group     string
	Log       *slog.Logger
}

// Run blocks until ctx ends. The store counts as synced only after both caches synced, so the
// readiness probe does not admit traffic before the pool's pods are known.
func (k *KubeSource) Run(ctx context.Context, store *Store) error {
	log := k.Log
	if log == nil {
		log = slog.Default()
	}
	poolInf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(k.Dynamic, 0, k.Namespace,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.Name).String()
		}).ForResource(PoolResource(k.Group))
	podFactory := informers.NewSharedInformerFactoryWithOptions(k.Clientset, 0, informers.WithNamespace(k.Namespace))
	podInf := podFactory.Core().V1().Pods()

	changes := kube.NewChanges()
	handler := changes.Handler()
	if _, err := poolInf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watch InferencePool %s/%s: %w", k.Namespace, k.Name, err)
	}
	if _, err := podInf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watch pods in %s: %w", k.Namespace, err)
	}
	go poolInf.Informer().Run(ctx.Done())
	podFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), poolInf.Informer().HasSynced, podInf.Informer().HasSynced) {
		return fmt.Errorf("sync caches for InferencePool %s/%s: %w", k.Namespace, k.Name, ctx.Err())
	}
	lastErr := ""
	for {
		specs, err := k.compute(poolInf.Lister(), podInf.Lister().Pods(k.Namespace))
		if err != nil {
			// A missing or invalid pool empties the endpoint set: requests then get 503,
			// which is what upstream does for an empty pool.
			if msg := err.Error(); msg != lastErr {
				log.Warn("endpoint discovery", "error", msg)
				lastErr = msg
			}
			specs = nil
		} else {
			lastErr = ""
		}
		store.Replace(specs)
		select {
		case <-ctx.Done():
			return nil
		case <-changes.C():
		case <-time.After(30 * time.Second):
			// Periodic recompute is a safety net only; events drive normal operation.
		}
	}
}

type podLister interface {
	List(selector labels.Selector) ([]*corev1.Pod, error)
}

type poolLister interface {
	ByNamespace(ns string) cache.GenericNamespaceLister
}

func (k *KubeSource) compute(pools poolLister, pods podLister) ([]Spec, error) {
	obj, err := pools.ByNamespace(k.Namespace).Get(k.Name)
	if err != nil {
		return nil, fmt.Errorf("get InferencePool %s/%s: %w", k.Namespace, k.Name, err)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("InferencePool %s/%s: unexpected object type %T", k.Namespace, k.Name, obj)
	}
	pool, err := PoolFromUnstructured(u)
	if err != nil {
		return nil, err
	}
	list, err := pods.List(labels.SelectorFromSet(pool.Selector))
	if err != nil {
		return nil, fmt.Errorf("list pods for InferencePool %s/%s: %w", k.Namespace, k.Name, err)
	}
	return EndpointsForPool(pool, list), nil
}
