// Package mocker turns CPU nodes into fake GPU nodes: it labels them as the NVIDIA GPU
// feature discovery would and advertises nvidia.com/gpu in their status, so pods requesting
// GPUs schedule onto them and GPU capacity really limits how many model replicas fit.
// It is a level-triggered controller: whatever removes a label or the capacity, the next
// reconcile (triggered by that very change) puts it back.
package mocker

import (
	"fmt"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
)

// GPUResource is the extended resource model pods request.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// Label keys, as NVIDIA GPU feature discovery and KAITO read them
// (shared/facts/kaito-keda-auth-facts.md §1.5: KAITO's BYO mode sizes GPUs from
// gpu.product, gpu.count and gpu.memory, and checks accelerator=nvidia).
const (
	LabelGPUPresent = "nvidia.com/gpu.present"
	LabelGPUProduct = "nvidia.com/gpu.product"
	LabelGPUCount   = "nvidia.com/gpu.count"
	LabelGPUMemory  = "nvidia.com/gpu.memory"
	LabelAccel      = "accelerator"
	LabelFakeNode   = "kaito.sh/fake-node"
	LabelManagedBy  = "kaito.sh/managed-by"
	ManagedByValue  = "gpu-mocker"
)

// Config says which nodes become GPU nodes and what GPUs they pretend to have.
type Config struct {
	// Selector picks the nodes to mock; control-plane nodes are excluded by default.
	Selector labels.Selector
	// GPUsPerNode is the nvidia.com/gpu capacity of each mocked node.
	GPUsPerNode int
	// Product is the GPU model name (nvidia.com/gpu.product).
	Product string
	// MemoryMiB is each GPU's memory in MiB (nvidia.com/gpu.memory).
	MemoryMiB int
}

// DefaultSelector selects every node that is not a control plane.
func DefaultSelector() labels.Selector {
	s, _ := labels.Parse("!node-role.kubernetes.io/control-plane")
	return s
}

// Validate rejects configurations that would mock nothing meaningful.
func (c Config) Validate() error {
	if c.GPUsPerNode < 1 || c.GPUsPerNode > 64 {
		return fmt.Errorf("--gpus-per-node must be between 1 and 64, got %d", c.GPUsPerNode)
	}
	if c.Product == "" {
		return fmt.Errorf("--gpu-product must not be empty")
	}
	if c.MemoryMiB < 1 {
		return fmt.Errorf("--gpu-memory-mib must be positive, got %d", c.MemoryMiB)
	}
	if c.Selector == nil {
		return fmt.Errorf("a node selector is required")
	}
	return nil
}

// Labels are the labels every mocked node carries.
func (c Config) Labels() map[string]string {
	return map[string]string{
		LabelGPUPresent: "true",
		LabelGPUProduct: c.Product,
		LabelGPUCount:   strconv.Itoa(c.GPUsPerNode),
		LabelGPUMemory:  strconv.Itoa(c.MemoryMiB),
		LabelAccel:      "nvidia",
		LabelFakeNode:   "true",
		LabelManagedBy:  ManagedByValue,
	}
}

// Selects reports whether the node is one to mock.
func (c Config) Selects(n *corev1.Node) bool {
	return c.Selector.Matches(labels.Set(n.Labels))
}

// MissingLabels returns the labels to set on n (nil when it already has them all).
func (c Config) MissingLabels(n *corev1.Node) map[string]string {
	var missing map[string]string
	for k, v := range c.Labels() {
		if n.Labels[k] != v {
			if missing == nil {
				missing = map[string]string{}
			}
			missing[k] = v
		}
	}
	return missing
}

// WithLabels returns n's labels merged with the mocked ones.
func (c Config) WithLabels(n *corev1.Node) map[string]string {
	out := maps.Clone(n.Labels)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, c.Labels())
	return out
}

// Quantity is the GPU capacity as a resource quantity.
func (c Config) Quantity() resource.Quantity {
	return *resource.NewQuantity(int64(c.GPUsPerNode), resource.DecimalSI)
}

// CapacityCurrent reports whether n's status already advertises the GPUs, in capacity and
// allocatable (the scheduler reads allocatable).
func (c Config) CapacityCurrent(n *corev1.Node) bool {
	want := c.Quantity()
	for _, list := range []corev1.ResourceList{n.Status.Capacity, n.Status.Allocatable} {
		got, ok := list[GPUResource]
		if !ok || got.Cmp(want) != 0 {
			return false
		}
	}
	return true
}
