package addons

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/keda"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/manifests"
)

// DefaultSystemNamespace holds the sandbox's cluster-wide components.
const DefaultSystemNamespace = "sandbox-system"

// Offline is the offline profile's catalogue, in install order: what a later addon needs
// (CRDs, the authz and BBR Services the gateways call) comes first.
func Offline() []Addon {
	return []Addon{
		{Name: "offline DNS (CoreDNS without upstream forwarding)", Install: isolateCoreDNS, Ready: coreDNSReady},
		{Name: "CRDs (Gateway API, InferencePool, APIKey, InferenceSet)", Install: installCRDs, Ready: crdsEstablished},
		{Name: "GPU node mocker", Install: applyTemplate(manifests.Offline, "mocker.yaml"), Ready: gpusAdvertised},
		{Name: "API-key authorization (ext_authz + APIKey operator)", Install: applyTemplate(manifests.Offline, "authz.yaml"), Ready: deploymentReady("apikey-authz")},
		{Name: "body-based router", Install: applyTemplate(manifests.Offline, "bbr.yaml"), Ready: deploymentReady("body-based-router")},
		{Name: "model-not-found backend", Install: applyTemplate(manifests.Offline, "notfound.yaml"), Ready: deploymentReady("model-not-found")},
		{Name: "gateway controller (GatewayClass sandbox)", Install: applyTemplate(manifests.Offline, "gateway.yaml"), Ready: deploymentReady("gateway-controller")},
		{Name: "InferenceSet controller", Install: applyTemplate(manifests.Offline, "inferenceset.yaml"), Ready: deploymentReady("inferenceset-controller")},
		{Name: "KEDA " + keda.Version + " (operator, metrics adapter, external metrics APIService)",
			Install: func(ctx context.Context, env *Env) error { return keda.Install(ctx, env.Client, kedaValues(env)) },
			Ready:   func(ctx context.Context, env *Env) error { return keda.Ready(ctx, env.Client, kedaValues(env)) }},
		{Name: "KAITO scaler (KEDA external scaler)",
			Install: func(ctx context.Context, env *Env) error { return keda.InstallScaler(ctx, env.Client, kedaValues(env)) },
			Ready:   func(ctx context.Context, env *Env) error { return keda.ScalerReady(ctx, env.Client, kedaValues(env)) }},
	}
}

func kedaValues(env *Env) keda.Values {
	return keda.Values{Image: env.Values.KEDAImage, StackdImage: env.Values.StackdImage, ScalerTiming: env.Values.ScalerTiming}
}

// Components are the Deployments of the offline catalogue, for `status`.
func Components(systemNamespace string) []Component {
	return []Component{
		{Name: "coredns", Namespace: "kube-system", Deployment: "coredns"},
		{Name: "gpu-node-mocker", Namespace: systemNamespace, Deployment: "gpu-node-mocker"},
		{Name: "apikey-authz", Namespace: systemNamespace, Deployment: "apikey-authz"},
		{Name: "body-based-router", Namespace: systemNamespace, Deployment: "body-based-router"},
		{Name: "model-not-found", Namespace: systemNamespace, Deployment: "model-not-found"},
		{Name: "gateway-controller", Namespace: systemNamespace, Deployment: "gateway-controller"},
		{Name: "inferenceset-controller", Namespace: systemNamespace, Deployment: "inferenceset-controller"},
		{Name: "keda-operator", Namespace: keda.DefaultNamespace, Deployment: "keda-operator"},
		{Name: "keda-metrics-apiserver", Namespace: keda.DefaultNamespace, Deployment: "keda-operator-metrics-apiserver"},
		{Name: "keda-kaito-scaler", Namespace: keda.DefaultNamespace, Deployment: "keda-kaito-scaler"},
	}
}

// Component names a Deployment that makes up the sandbox.
type Component struct{ Name, Namespace, Deployment string }

func deploymentReady(name string) func(context.Context, *Env) error {
	return func(ctx context.Context, env *Env) error {
		return env.Client.WaitDeployment(ctx, env.Values.SystemNamespace, name, 3*time.Minute)
	}
}

func coreDNSReady(ctx context.Context, env *Env) error {
	return env.Client.WaitDeployment(ctx, "kube-system", "coredns", 3*time.Minute)
}

// gpusAdvertised waits for the mocker to run and every worker to offer its fake GPUs.
func gpusAdvertised(ctx context.Context, env *Env) error {
	if err := env.Client.WaitDeployment(ctx, env.Values.SystemNamespace, "gpu-node-mocker", 3*time.Minute); err != nil {
		return err
	}
	return kube.WaitFor(ctx, time.Minute, time.Second, "fake GPUs", func(ctx context.Context) (bool, string, error) {
		nodes, err := env.Client.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: mocker.DefaultSelector().String()})
		if err != nil {
			return false, err.Error(), nil
		}
		if len(nodes.Items) == 0 {
			return false, "no worker nodes", nil
		}
		for _, n := range nodes.Items {
			q := n.Status.Allocatable[mocker.GPUResource]
			if q.Value() != int64(env.Values.GPUsPerNode) {
				return false, fmt.Sprintf("node %s offers %s of %d GPUs", n.Name, q.String(), env.Values.GPUsPerNode), nil
			}
		}
		return true, "", nil
	})
}
