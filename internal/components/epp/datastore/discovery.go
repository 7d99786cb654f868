package datastore

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// ActivePortsAnnotation restricts which of the pool's target ports a pod serves (llm-d-facts §2.6).
const ActivePortsAnnotation = "inference.networking.k8s.io/active-ports"

// maxTargetPorts is the InferencePool API limit on spec.targetPorts (llm-d-facts §4.1).
const maxTargetPorts = 8

// Pool is the part of an InferencePool (inference.networking.k8s.io/v1) that discovery needs.
type Pool struct {
	Namespace   string
	Name        string
	Selector    map[string]string
	TargetPorts []int
}

// PoolFromUnstructured reads spec.selector.matchLabels and spec.targetPorts[].number.
func PoolFromUnstructured(u *unstructured.Unstructured) (Pool, error) {
	p := Pool{Namespace: u.GetNamespace(), Name: u.GetName()}
	sel, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if err != nil {
		return p, fmt.Errorf("InferencePool %s/%s: spec.selector.matchLabels: %w", p.Namespace, p.Name, err)
	}
	if len(sel) == 0 {
		return p, fmt.Errorf("InferencePool %s/%s: spec.selector.matchLabels is empty", p.Namespace, p.Name)
	}
	p.Selector = sel
	ports, _, err := unstructured.NestedSlice(u.Object, "spec", "targetPorts")
	if err != nil {
		return p, fmt.Errorf("InferencePool %s/%s: spec.targetPorts: %w", p.Namespace, p.Name, err)
	}
	for i, raw := range ports {
		m, ok := raw.(map[string]any)
		if !ok {
			return p, fmt.Errorf("InferencePool %s/%s: spec.targetPorts[%d] is not an object", p.Namespace, p.Name, i)
		}
		n, ok, err := unstructured.NestedInt64(m, "number")
		if err != nil || !ok || n < 1 || n > 65535 {
			return p, fmt.Errorf("InferencePool %s/%s: spec.targetPorts[%d].number must be 1..65535", p.Namespace, p.Name, i)
		}
		p.TargetPorts = append(p.TargetPorts, int(n))
	}
	if len(p.TargetPorts) == 0 || len(p.TargetPorts) > maxTargetPorts {
		return p, fmt.Errorf("InferencePool %s/%s: spec.targetPorts must have 1..%d entries, has %d",
			p.Namespace, p.Name, maxTargetPorts, len(p.TargetPorts))
	}
	return p, nil
}

// EndpointsForPool turns the pool's pods into endpoints: one per target port of every pod that
// matches the selector, is Ready, is not being deleted and has an IP (llm-d-facts §2.6).
func EndpointsForPool(pool Pool, pods []*corev1.Pod) []Spec {
	sel := labels.SelectorFromSet(pool.Selector)
	var out []Spec
	for _, pod := range pods {
		if pod.Namespace != pool.Namespace || !sel.Matches(labels.Set(pod.Labels)) || !podReady(pod) {
			continue
		}
		active := activePorts(pod)
		for rank, port := range pool.TargetPorts {
			if active != nil && !active[port] {
				continue
			}
			out = append(out, Spec{
				Name:      pod.Name + "-rank-" + strconv.Itoa(rank),
				PodName:   pod.Name,
				Namespace: pod.Namespace,
				Address:   net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)),
				Labels:    pod.Labels,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// activePorts returns nil when the pod does not restrict its ports.
func activePorts(pod *corev1.Pod) map[int]bool {
	v, ok := pod.Annotations[ActivePortsAnnotation]
	if !ok {
		return nil
	}
	m := map[int]bool{}
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			m[n] = true
		}
	}
	return m
}

// ParseStatic reads a comma-separated list of host:port endpoints for running without
// Kubernetes (benchmarks, loopback tests). Each endpoint is named after its address.
func ParseStatic(list string) ([]Spec, error) {
	var out []Spec
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		host, port, err := net.SplitHostPort(f)
		if err != nil {
			return nil, fmt.Errorf("static endpoint %q: %w", f, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("static endpoint %q: port must be 1..65535", f)
		}
		addr := net.JoinHostPort(host, port)
		out = append(out, Spec{Name: addr, Address: addr})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("static endpoint list %q is empty", list)
	}
	return out, nil
}

// Source keeps a Store in step with the outside world until ctx ends.
type Source interface {
	Run(ctx context.Context, store *Store) error
}

// StaticSource is a fixed endpoint list.
type StaticSource []Spec

// Run publishes the list once and waits for ctx.
func (s StaticSource) Run(ctx context.Context, store *Store) error {
	store.Replace(s)
	<-ctx.Done()
	return nil
}
