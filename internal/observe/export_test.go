package observe

import (
	"testing"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// World exposes the test cluster to the external benchmark (which also needs internal/tui,
// and tui imports observe).
type World struct {
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	w         *world
}

func StartWorld(t testing.TB) *World {
	w := startWorld(t)
	return &World{Clientset: w.cs, Dynamic: w.dyn, w: w}
}

func (w *World) AddModel(t testing.TB, name string, replicas int) { w.w.addModel(t, name, replicas) }
func (w *World) AddPod(t testing.TB, model, name, node, ip string) {
	w.w.addPod(t, model, name, node, ip)
}
func (w *World) SetMetric(t testing.TB, model string, v float64) { w.w.setMetric(t, model, v) }
