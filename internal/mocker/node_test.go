package mocker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func testConfig() Config {
	return Config{Selector: DefaultSelector(), GPUsPerNode: 4, Product: "NVIDIA-A100-SXM4-80GB", MemoryMiB: 81920}
}

func node(name string, lbls map[string]string, gpus string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
	if gpus != "" {
		q := resource.MustParse(gpus)
		n.Status.Capacity = corev1.ResourceList{GPUResource: q}
		n.Status.Allocatable = corev1.ResourceList{GPUResource: q}
	}
	return n
}

func TestSelectsWorkersNotControlPlane(t *testing.T) {
	c := testConfig()
	if c.Selects(node("cp", map[string]string{"node-role.kubernetes.io/control-plane": ""}, "")) {
		t.Error("control-plane node selected")
	}
	if !c.Selects(node("w", map[string]string{"kubernetes.io/hostname": "w"}, "")) {
		t.Error("worker not selected")
	}
	sel, _ := labels.Parse("pool=gpu")
	c.Selector = sel
	if c.Selects(node("w", nil, "")) || !c.Selects(node("w", map[string]string{"pool": "gpu"}, "")) {
		t.Error("custom selector not honoured")
	}
}

func TestMissingLabels(t *testing.T) {
	c := testConfig()
	n := node("w", map[string]string{"keep": "me"}, "")
	missing := c.MissingLabels(n)
	if len(missing) != len(c.Labels()) {
		t.Fatalf("bare node: want all %d labels missing, got %v", len(c.Labels()), missing)
	}
	n.Labels = c.WithLabels(n)
	if n.Labels["keep"] != "me" {
		t.Error("WithLabels dropped an existing label")
	}
	if m := c.MissingLabels(n); m != nil {
		t.Errorf("fully labelled node reports missing %v", m)
	}
	n.Labels[LabelGPUCount] = "8" // someone changed it
	delete(n.Labels, LabelAccel)  // someone removed one
	m := c.MissingLabels(n)
	if len(m) != 2 || m[LabelGPUCount] != "4" || m[LabelAccel] != "nvidia" {
		t.Errorf("want gpu.count and accelerator back, got %v", m)
	}
}

func TestCapacityCurrent(t *testing.T) {
	c := testConfig()
	for _, tc := range []struct {
		name string
		n    *corev1.Node
		want bool
	}{
		{"none", node("w", nil, ""), false},
		{"wrong count", node("w", nil, "2"), false},
		{"right", node("w", nil, "4"), true},
	} {
		if got := c.CapacityCurrent(tc.n); got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
	// allocatable dropped by someone while capacity stayed
	n := node("w", nil, "4")
	delete(n.Status.Allocatable, GPUResource)
	if c.CapacityCurrent(n) {
		t.Error("missing allocatable not detected")
	}
}

func TestValidate(t *testing.T) {
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mutate := range []func(*Config){
		func(c *Config) { c.GPUsPerNode = 0 },
		func(c *Config) { c.GPUsPerNode = 65 },
		func(c *Config) { c.Product = "" },
		func(c *Config) { c.MemoryMiB = 0 },
		func(c *Config) { c.Selector = nil },
	} {
		c := testConfig()
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("invalid config accepted: %+v", c)
		}
	}
}
