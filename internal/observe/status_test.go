package observe

import (
	"context"
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/kube"
)

// TestCollectSaysWhyAModelIsNotReady runs status's collection against a real kube-apiserver: a
// replica the scheduler cannot place names the missing fake GPUs, and the nodes count them.
func TestCollectSaysWhyAModelIsNotReady(t *testing.T) {
	w := startWorld(t)
	w.addModel(t, "phi-4-mini", 2)
	w.addPod(t, "phi-4-mini", "phi-4-mini-0-0", "w1", "10.0.0.1")
	w.addPod(t, "phi-4-mini", "phi-4-mini-1-0", "", "")
	c, err := kube.NewForConfig(w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Collect(context.Background(), c, []ComponentRef{{Name: "missing", Namespace: "models", Deployment: "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	why := st.ModelReason("models", "phi-4-mini", "1/2 replicas ready")
	if !strings.HasPrefix(why, "1/2 replicas ready; 1 pod(s) Pending: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu") {
		t.Errorf("model reason %q", why)
	}
	// The InferenceSet controller may already quote the scheduler; no need to say it twice.
	quoted := "1/2 replicas ready; phi-4-mini-1-0 Pending (Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu)"
	if got := st.ModelReason("models", "phi-4-mini", quoted); got != quoted {
		t.Errorf("reason %q repeats the scheduler", got)
	}
	if got := st.ModelReason("models", "other", "fine"); got != "fine" {
		t.Errorf("a model without pending pods got reason %q", got)
	}
	if len(st.Nodes) != 2 || st.Nodes[0].GPUs != 4 || st.Nodes[0].GPUsUsed != 1 || !st.Nodes[0].Ready {
		t.Errorf("nodes %+v, want w1 ready with 1 of 4 fake GPUs used", st.Nodes)
	}
	if st.Ready || len(st.Components) != 1 || st.Components[0].Ready || !strings.Contains(st.Components[0].Reason, "not found") {
		t.Errorf("a missing component: ready %v, %+v", st.Ready, st.Components)
	}
}
