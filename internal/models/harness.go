// Package models manages what serves models in a workload namespace: the per-namespace
// harness (Gateway, catch-all route, API key: the modelharness chart) and, later, one
// modeldeployment release per model.
package models

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

// DefaultNamespace is the workload namespace of the default models.
const DefaultNamespace = "models"

// HarnessRelease is the modelharness release name, one per namespace (as upstream's e2e).
const HarnessRelease = "modelharness"

// APIKeySecret and APIKeySecretKey are where the APIKey operator puts a namespace's key.
const (
	APIKeySecret    = "llm-api-key"
	APIKeySecretKey = "apiKey"
)

var gatewayGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}

// GatewayName is the Gateway of a namespace.
func GatewayName(namespace string) string { return namespace + "-gw" }

// HarnessOptions configure EnsureHarness.
type HarnessOptions struct {
	Namespace       string
	GatewayClass    string
	SystemNamespace string
	Kubeconfig      string
}

// EnsureHarness installs or upgrades the namespace's modelharness release and waits until its
// Gateway is programmed, its data plane runs and its API key exists.
func EnsureHarness(ctx context.Context, c *kube.Client, o HarnessOptions) error {
	chrt, err := helm.LoadChart(manifests.Charts, "modelharness")
	if err != nil {
		return err
	}
	values := map[string]any{
		"namespace":        o.Namespace,
		"gatewayClassName": o.GatewayClass,
		"modelNotFound":    map[string]any{"namespace": o.SystemNamespace},
	}
	hc := &helm.Client{Kubeconfig: o.Kubeconfig}
	if _, err := hc.Apply(ctx, HarnessRelease, o.Namespace, chrt, values, 0); err != nil {
		return err
	}
	return WaitHarness(ctx, c, o.Namespace, 5*time.Minute)
}

// WaitHarness waits for the Gateway to be Programmed and the API key to exist.
func WaitHarness(ctx context.Context, c *kube.Client, namespace string, timeout time.Duration) error {
	gw := GatewayName(namespace)
	err := kube.WaitFor(ctx, timeout, time.Second, "gateway "+namespace+"/"+gw, func(ctx context.Context) (bool, string, error) {
		obj, err := c.Dynamic.Resource(gatewayGVR).Namespace(namespace).Get(ctx, gw, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ok, why, err := conditionTrue(obj, "Programmed")
		if !ok {
			why += dataPlaneProblem(ctx, c, namespace, gw)
		}
		return ok, why, err
	})
	if err != nil {
		return err
	}
	_, err = waitAPIKey(ctx, c, namespace, timeout)
	return err
}

// dataPlaneProblem says what the gateway controller's data plane for a Gateway is waiting on.
func dataPlaneProblem(ctx context.Context, c *kube.Client, namespace, gw string) string {
	d, err := c.Clientset.AppsV1().Deployments(namespace).Get(ctx, gw+"-sandbox", metav1.GetOptions{})
	if err != nil {
		return "; data plane: " + err.Error()
	}
	_, why := kube.DeploymentReady(d)
	return "; data plane: " + why + c.PodProblems(ctx, namespace, d.Spec.Selector)
}

func conditionTrue(obj *unstructured.Unstructured, condType string) (bool, string, error) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == condType {
			if m["status"] == "True" {
				return true, "", nil
			}
			return false, fmt.Sprintf("%s=%v: %v %v", condType, m["status"], m["reason"], m["message"]), nil
		}
	}
	return false, "no " + condType + " condition yet", nil
}

func waitAPIKey(ctx context.Context, c *kube.Client, namespace string, timeout time.Duration) (string, error) {
	var key string
	err := kube.WaitFor(ctx, timeout, time.Second, "API key of namespace "+namespace, func(ctx context.Context) (bool, string, error) {
		k, err := APIKey(ctx, c, namespace)
		if err != nil {
			return false, err.Error(), nil
		}
		key = k
		return true, "", nil
	})
	return key, err
}

// APIKey returns the namespace's API key.
func APIKey(ctx context.Context, c *kube.Client, namespace string) (string, error) {
	s, err := c.Clientset.CoreV1().Secrets(namespace).Get(ctx, APIKeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("namespace %s has no API key yet (Secret %s missing; is the namespace's harness installed? run `sandbox up`)", namespace, APIKeySecret)
	}
	if err != nil {
		return "", fmt.Errorf("reading Secret %s/%s: %w", namespace, APIKeySecret, err)
	}
	key := string(s.Data[APIKeySecretKey])
	if key == "" {
		return "", fmt.Errorf("Secret %s/%s has no %q", namespace, APIKeySecret, APIKeySecretKey)
	}
	return key, nil
}
