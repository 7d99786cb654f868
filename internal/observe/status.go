// Package observe reads the state of a running sandbox for `status` and the dashboard.
package observe

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/mocker"
)

// Status is the whole sandbox at one moment; its JSON form is `status -o json`.
type Status struct {
	Name string `json:"name"`
	// Profile is offline or upstream: which catalogue's components the sandbox runs.
	Profile     string      `json:"profile,omitempty"`
	Kubeconfig  string      `json:"kubeconfig"`
	Ready       bool        `json:"ready"`
	Nodes       []Node      `json:"nodes"`
	Components  []Component `json:"components"`
	Models      []Model     `json:"models"`
	EgressGuard Check       `json:"egressGuard"`

	// unplaced maps namespace/model to its pods waiting for a node (no free fake GPU) and why.
	unplaced map[string]unplaced
}

type unplaced struct {
	pods int
	why  string
}

// ModelReason is why a model is not ready: the InferenceSet's own message, completed with
// the scheduler's reason when replicas cannot be placed, which the condition does not say.
func (st *Status) ModelReason(namespace, name, message string) string {
	u := st.unplaced[namespace+"/"+name]
	why := fmt.Sprintf("%d pod(s) Pending: %s", u.pods, u.why)
	switch {
	case u.pods == 0 || strings.Contains(message, u.why):
		return message
	case message == "":
		return why
	default:
		return message + "; " + why
	}
}

// Node is one Kubernetes node and its fake GPUs.
type Node struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Ready    bool   `json:"ready"`
	GPUs     int64  `json:"gpus"`
	GPUsUsed int64  `json:"gpusUsed"`
	Product  string `json:"gpuProduct,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Model is one deployed model: desired and ready replicas, and why it is not ready.
type Model struct {
	Name          string `json:"name"`
	Namespace     string `json:"namespace"`
	Replicas      int32  `json:"replicas"`
	ReadyReplicas int32  `json:"readyReplicas"`
	Ready         bool   `json:"ready"`
	Reason        string `json:"reason,omitempty"`
}

// Component is one installed workload of the sandbox.
type Component struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Ready     bool   `json:"ready"`
	Reason    string `json:"reason,omitempty"`
}

// Check is a yes/no with the reason when no.
type Check struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// ComponentRef names a Deployment that makes up the sandbox.
type ComponentRef struct{ Name, Namespace, Deployment string }

// Collect reads nodes and components from the cluster.
func Collect(ctx context.Context, c *kube.Client, components []ComponentRef) (*Status, error) {
	st := &Status{Ready: true, unplaced: map[string]unplaced{}}
	nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	pods, err := c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	used := map[string]int64{}
	for _, p := range pods.Items {
		if model := p.Labels[inferenceset.LabelCreatedBy]; model != "" {
			if why, ok := unschedulableReason(&p); ok {
				key := p.Namespace + "/" + model
				st.unplaced[key] = unplaced{pods: st.unplaced[key].pods + 1, why: why}
			}
		}
		if p.Spec.NodeName == "" {
			continue
		}
		for _, ctr := range p.Spec.Containers {
			if q, ok := ctr.Resources.Requests[mocker.GPUResource]; ok {
				used[p.Spec.NodeName] += q.Value()
			} else if q, ok := ctr.Resources.Limits[mocker.GPUResource]; ok {
				used[p.Spec.NodeName] += q.Value()
			}
		}
	}
	for _, n := range nodes.Items {
		st.Nodes = append(st.Nodes, nodeStatus(&n, used[n.Name]))
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	for _, n := range st.Nodes {
		if !n.Ready {
			st.Ready = false
		}
	}
	for _, ref := range components {
		comp := Component{Name: ref.Name, Namespace: ref.Namespace}
		d, err := c.Clientset.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Deployment, metav1.GetOptions{})
		if err != nil {
			comp.Reason = err.Error()
		} else {
			ok, why := kube.DeploymentReady(d)
			comp.Ready = ok
			if !ok {
				comp.Reason = why
			}
		}
		if !comp.Ready {
			st.Ready = false
		}
		st.Components = append(st.Components, comp)
	}
	return st, nil
}

func nodeStatus(n *corev1.Node, used int64) Node {
	out := Node{Name: n.Name, Role: "worker", Ready: kube.NodeReady(n), GPUsUsed: used, Product: n.Labels[mocker.LabelGPUProduct]}
	if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
		out.Role = "control-plane"
	}
	if q, ok := n.Status.Allocatable[mocker.GPUResource]; ok {
		out.GPUs = q.Value()
	}
	var reasons []string
	if !out.Ready {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				reasons = append(reasons, strings.TrimSpace(c.Reason+" "+c.Message))
			}
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "no Ready condition yet")
		}
	}
	if out.Role == "worker" && out.GPUs == 0 {
		reasons = append(reasons, "no fake GPUs advertised (is the GPU node mocker running?)")
	}
	out.Reason = strings.Join(reasons, "; ")
	return out
}
