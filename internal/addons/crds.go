package addons

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crdObjects gathers the Gateway API standard CRDs and the Inference Extension's InferencePool
// and InferenceObjective (read from the upstream modules in the module cache, never copied into
// this repository) and this repository's own CRDs (KAITO's APIKey and InferenceSet).
func crdObjects(ctx context.Context) ([]*unstructured.Unstructured, error) {
	objs, err := gatewayAPIObjects(ctx)
	if err != nil {
		return nil, err
	}
	ie, err := crds.InferenceExtension(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range ie {
		o, err := kube.Decode(f.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		objs = append(objs, o...)
	}
	own, err := fs.Glob(manifests.CRDs, "*.yaml")
	if err != nil {
		return nil, err
	}
	for _, name := range own {
		data, err := fs.ReadFile(manifests.CRDs, name)
		if err != nil {
			return nil, err
		}
		o, err := kube.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		objs = append(objs, o...)
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			out = append(out, o)
		}
	}
	return out, nil
}

func installCRDs(ctx context.Context, env *Env) error {
	objs, err := crdObjects(ctx)
	if err != nil {
		return err
	}
	return env.Client.Apply(ctx, objs)
}

// crdsEstablished waits until the API server serves every CRD, so the next addons' objects
// of those kinds are accepted.
func crdsEstablished(ctx context.Context, env *Env) error {
	objs, err := crdObjects(ctx)
	if err != nil {
		return err
	}
	return kube.WaitFor(ctx, time.Minute, 500*time.Millisecond, "CRDs", func(ctx context.Context) (bool, string, error) {
		for _, o := range objs {
			crd, err := env.Client.Dynamic.Resource(crdGVR).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if !established {
				return false, "CRD " + o.GetName() + " not established", nil
			}
		}
		return true, "", nil
	})
}

// gatewayAPIObjects decodes the Gateway API standard CRDs from the gateway-api module; both
// profiles install them.
func gatewayAPIObjects(ctx context.Context) ([]*unstructured.Unstructured, error) {
	files, err := crds.GatewayAPI(ctx)
	if err != nil {
		return nil, fmt.Errorf("Gateway API CRDs: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		o, err := kube.Decode(f.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		objs = append(objs, o...)
	}
	return objs, nil
}
