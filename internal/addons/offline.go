package addons

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/manifests"
)

// DefaultSystemNamespace holds the sandbox's cluster-wide components.
const DefaultSystemNamespace = "sandbox-system"

// Offline is the offline profile's catalogue, in install order.
func Offline() []Addon {
	return []Addon{
		{Name: "offline DNS (CoreDNS without upstream forwarding)", Install: isolateCoreDNS, Ready: coreDNSReady},
		{Name: "GPU node mocker", Install: applyTemplate(manifests.Offline, "mocker.yaml"), Ready: gpusAdvertised},
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
