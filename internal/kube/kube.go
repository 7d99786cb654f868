// Package kube is the one place Kubernetes clients are built, and holds the few generic
// operations the sandbox needs on any object: server-side apply of YAML and waiting.
package kube

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is the server-side apply manager name of everything the sandbox applies.
const FieldManager = "sandbox"

// Client bundles the typed, dynamic and discovery clients of one cluster.
type Client struct {
	Config    *rest.Config
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
}

// New builds clients from a kubeconfig file.
func New(kubeconfig string) (*Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	return NewForConfig(cfg)
}

// NewForConfig builds clients from a REST config.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	// The sandbox applies dozens of objects at start-up; client-go's default 5 QPS would
	// make that crawl.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{
		Config:    cfg,
		Clientset: cs,
		Dynamic:   dyn,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}, nil
}

// Decode splits multi-document YAML into objects, skipping empty documents.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading YAML document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			return nil, fmt.Errorf("parsing YAML document %d: %w", i, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" {
			return nil, fmt.Errorf("YAML document %d has no kind or apiVersion", i)
		}
		objs = append(objs, obj)
	}
}

// Apply server-side-applies every object, in order, taking ownership of the fields it sets.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, obj := range objs {
		if err := c.ApplyObject(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// ApplyObject server-side-applies one object.
func (c *Client) ApplyObject(ctx context.Context, obj *unstructured.Unstructured) error {
	ri, err := c.resourceFor(obj)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: force})
	if err != nil {
		return fmt.Errorf("applying %s: %w", describe(obj), err)
	}
	return nil
}

// Delete removes objects, ignoring those already gone.
func (c *Client) Delete(ctx context.Context, objs []*unstructured.Unstructured) error {
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		ri, err := c.resourceFor(obj)
		if err != nil {
			if meta.IsNoMatchError(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		policy := metav1.DeletePropagationForeground
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", describe(obj), err))
		}
	}
	return errors.Join(errs...)
}

func (c *Client) resourceFor(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A CRD applied a moment ago is not in the cached discovery yet.
		c.mapper.Reset()
		mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("the cluster does not serve %s: %w", gvk, err)
		}
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		return c.Dynamic.Resource(mapping.Resource).Namespace(ns), nil
	}
	return c.Dynamic.Resource(mapping.Resource), nil
}

// GVR resolves a kind to its resource, for callers that read objects dynamically.
func (c *Client) GVR(gvk schema.GroupVersionKind) (schema.GroupVersionResource, error) {
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return mapping.Resource, nil
}

func describe(obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if ns := obj.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return strings.ToLower(obj.GetKind()) + " " + name
}

func isNotFound(err error) bool {
	var status interface{ Status() metav1.Status }
	if errors.As(err, &status) {
		return status.Status().Reason == metav1.StatusReasonNotFound
	}
	return false
}
