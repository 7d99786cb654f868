package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// WaitFor polls cond every interval until it returns true, an error, or timeout. On timeout
// the error carries cond's last explanation, so the user learns what was not ready.
func WaitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, string, error)) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		ok, why, err := cond(ctx)
		// The last poll often fails only because the deadline is near; keep the last real reason.
		if why != "" && ctx.Err() == nil && !strings.Contains(why, "context deadline") && !strings.Contains(why, "rate limiter") {
			last = why
		}
		return ok, err
	})
	if err != nil {
		if last != "" {
			return fmt.Errorf("%s: not ready after %s: %s", what, timeout, last)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// DeploymentReady is true when every replica of the current generation is available.
func DeploymentReady(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Generation {
		return false, "rollout not yet observed"
	}
	if d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want {
		return false, fmt.Sprintf("%d/%d replicas available", d.Status.AvailableReplicas, want)
	}
	// During a rollout the old pods count as available too: done means only new ones are left.
	if d.Status.Replicas > d.Status.UpdatedReplicas {
		return false, fmt.Sprintf("rollout: %d old replicas still running", d.Status.Replicas-d.Status.UpdatedReplicas)
	}
	return true, fmt.Sprintf("%d/%d replicas available", d.Status.AvailableReplicas, want)
}

// WaitDeployment waits for a Deployment to be fully available.
func (c *Client) WaitDeployment(ctx context.Context, ns, name string, timeout time.Duration) error {
	return WaitFor(ctx, timeout, time.Second, "deployment "+ns+"/"+name, func(ctx context.Context) (bool, string, error) {
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ok, why := DeploymentReady(d)
		if !ok {
			why += c.PodProblems(ctx, ns, d.Spec.Selector)
		}
		return ok, why, nil
	})
}

// PodProblems summarises why a workload's pods are not running (image missing, crash loop).
func (c *Client) PodProblems(ctx context.Context, ns string, sel *metav1.LabelSelector) string {
	if sel == nil {
		return ""
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if why := PodProblem(&p); why != "" {
			return fmt.Sprintf("; pod %s: %s", p.Name, why)
		}
	}
	return ""
}

// PodProblem explains, in one phrase, why a pod is not ready ("" when it is).
func PodProblem(p *corev1.Pod) string {
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			msg := w.Reason
			if w.Message != "" {
				msg += ": " + w.Message
			}
			return fmt.Sprintf("container %s %s", cs.Name, msg)
		}
		if t := cs.LastTerminationState.Terminated; t != nil && !cs.Ready {
			return fmt.Sprintf("container %s last exited %d (%s)", cs.Name, t.ExitCode, t.Reason)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			return "unschedulable: " + cond.Message
		}
	}
	return ""
}

// NodeReady reports a node's Ready condition.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitNodesReady waits until the cluster has want nodes, all Ready.
func (c *Client) WaitNodesReady(ctx context.Context, want int, timeout time.Duration) error {
	return WaitFor(ctx, timeout, 2*time.Second, "nodes", func(ctx context.Context) (bool, string, error) {
		nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ready := 0
		var notReady []string
		for i := range nodes.Items {
			if NodeReady(&nodes.Items[i]) {
				ready++
			} else {
				notReady = append(notReady, nodes.Items[i].Name)
			}
		}
		return ready >= want, fmt.Sprintf("%d/%d nodes Ready (not ready: %v)", ready, want, notReady), nil
	})
}
