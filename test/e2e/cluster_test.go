//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/egress"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/lifecycle"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/internal/observe"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

func clientset(t *testing.T, cfg *envconf.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func workers(ctx context.Context, t *testing.T, cs kubernetes.Interface) []corev1.Node {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "!node-role.kubernetes.io/control-plane"})
	if err != nil {
		t.Fatal(err)
	}
	return nodes.Items
}

// eventually polls cond until it holds or the timeout passes, then fails with cond's last word.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestCluster(t *testing.T) {
	nodes := features.New("nodes").
		WithLabel("tier", "pr").WithLabel("area", "cluster").
		Assess("1 control-plane and the workers are Ready on Kubernetes "+versions.Kubernetes, func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != sb.Workers+1 {
				t.Fatalf("want %d nodes, got %d", sb.Workers+1, len(list.Items))
			}
			for _, n := range list.Items {
				if !kube.NodeReady(&n) {
					t.Errorf("node %s not Ready", n.Name)
				}
				if v := n.Status.NodeInfo.KubeletVersion; v != versions.Kubernetes {
					t.Errorf("node %s runs kubelet %s, want %s", n.Name, v, versions.Kubernetes)
				}
			}
			return ctx
		}).
		Assess("the API server listens on 127.0.0.1 only", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			host := cfg.Client().RESTConfig().Host
			if !strings.Contains(host, "://127.0.0.1:") {
				t.Fatalf("API server at %s, want 127.0.0.1", host)
			}
			out, err := exec.CommandContext(ctx, "docker", "port", sb.Name+"-control-plane").Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if !strings.Contains(line, "-> 127.0.0.1:") {
					t.Errorf("port published beyond loopback: %s", line)
				}
			}
			return ctx
		}).Feature()

	gpus := features.New("fake GPU nodes").
		WithLabel("tier", "pr").WithLabel("area", "mocker").
		Assess("workers carry the fake-GPU labels and nvidia.com/gpu capacity", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			ws := workers(ctx, t, cs)
			if len(ws) != sb.Workers {
				t.Fatalf("want %d workers, got %d", sb.Workers, len(ws))
			}
			want := mocker.Config{GPUsPerNode: sb.GPUsPerNode, Product: "NVIDIA-A100-SXM4-80GB", MemoryMiB: 81920, Selector: mocker.DefaultSelector()}
			for _, n := range ws {
				if missing := want.MissingLabels(&n); missing != nil {
					t.Errorf("node %s lacks labels %v", n.Name, missing)
				}
				for _, list := range []corev1.ResourceList{n.Status.Capacity, n.Status.Allocatable} {
					if q := list[mocker.GPUResource]; q.Value() != int64(sb.GPUsPerNode) {
						t.Errorf("node %s: nvidia.com/gpu = %s, want %d", n.Name, q.String(), sb.GPUsPerNode)
					}
				}
			}
			cp, err := cs.CoreV1().Nodes().Get(ctx, sb.Name+"-control-plane", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cp.Status.Capacity[mocker.GPUResource]; ok || cp.Labels[mocker.LabelFakeNode] != "" {
				t.Error("the control-plane node was mocked as a GPU node")
			}
			return ctx
		}).
		Assess("a pod requesting one GPU runs on a worker; one requesting more than a node has stays Pending", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			fits := gpuPod("gpu-fits", 1)
			tooBig := gpuPod("gpu-too-big", int64(sb.GPUsPerNode+1))
			for _, p := range []*corev1.Pod{fits, tooBig} {
				if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for _, p := range []*corev1.Pod{fits, tooBig} {
					_ = cs.CoreV1().Pods("default").Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
				}
			})
			workerNames := map[string]bool{}
			for _, n := range workers(ctx, t, cs) {
				workerNames[n.Name] = true
			}
			eventually(t, 90*time.Second, "1-GPU pod running on a worker", func() (bool, string) {
				p, err := cs.CoreV1().Pods("default").Get(ctx, fits.Name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				return p.Status.Phase == corev1.PodRunning && workerNames[p.Spec.NodeName],
					fmt.Sprintf("phase %s on %q %s", p.Status.Phase, p.Spec.NodeName, kube.PodProblem(p))
			})
			eventually(t, 60*time.Second, "oversized pod reported unschedulable", func() (bool, string) {
				p, err := cs.CoreV1().Pods("default").Get(ctx, tooBig.Name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "nvidia.com/gpu") {
						return true, ""
					}
				}
				return false, fmt.Sprintf("phase %s node %q conditions %v", p.Status.Phase, p.Spec.NodeName, p.Status.Conditions)
			})
			p, _ := cs.CoreV1().Pods("default").Get(ctx, tooBig.Name, metav1.GetOptions{})
			if p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
				t.Fatalf("oversized pod placed on %q (%s)", p.Spec.NodeName, p.Status.Phase)
			}
			return ctx
		}).
		Assess("the mocker restores a removed label and removed capacity within seconds", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			node := workers(ctx, t, cs)[0].Name
			patch := []byte(`[{"op":"remove","path":"/metadata/labels/nvidia.com~1gpu.product"}]`)
			if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			removed := time.Now()
			eventually(t, 15*time.Second, "label restored", func() (bool, string) {
				n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				return n.Labels[mocker.LabelGPUProduct] != "", "label still missing"
			})
			t.Logf("label restored after %s", time.Since(removed).Round(10*time.Millisecond))

			patch = []byte(`[{"op":"remove","path":"/status/capacity/nvidia.com~1gpu"},{"op":"remove","path":"/status/allocatable/nvidia.com~1gpu"}]`)
			if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.JSONPatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
				t.Fatal(err)
			}
			removed = time.Now()
			want := resource.NewQuantity(int64(sb.GPUsPerNode), resource.DecimalSI)
			eventually(t, 15*time.Second, "capacity restored", func() (bool, string) {
				n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				q := n.Status.Allocatable[mocker.GPUResource]
				return q.Cmp(*want) == 0, "allocatable " + q.String()
			})
			t.Logf("capacity restored after %s", time.Since(removed).Round(10*time.Millisecond))
			return ctx
		}).Feature()

	safety := features.New("offline safety").
		WithLabel("tier", "pr").WithLabel("area", "safety").
		Assess("the egress guard is installed for IPv4 and IPv6", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if err := egress.New().Check(ctx); err != nil {
				t.Fatal(err)
			}
			return ctx
		}).
		Assess("CoreDNS has no upstream forward", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(cm.Data["Corefile"], "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == "forward" {
					t.Fatalf("Corefile still forwards: %q", line)
				}
			}
			return ctx
		}).Feature()

	lifecycleFeature := features.New("idempotent up and status").
		WithLabel("tier", "pr").WithLabel("area", "lifecycle").
		Assess("a second up repairs without recreating anything", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			before := nodeContainerIDs(ctx, t)
			start := time.Now()
			res, err := lifecycle.Up(ctx, sb.upOptions())
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if res.Created {
				t.Fatal("second up recreated the cluster")
			}
			after := nodeContainerIDs(ctx, t)
			if strings.Join(before, ",") != strings.Join(after, ",") {
				t.Fatalf("node containers changed: %v -> %v", before, after)
			}
			t.Logf("second up took %s", took.Round(100*time.Millisecond))
			if took > 2*time.Minute {
				t.Errorf("second up took %s; a repair of a healthy sandbox should take seconds", took)
			}
			return ctx
		}).
		Assess("sandbox status -o json reports every node and component ready", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			out, err := exec.CommandContext(ctx, sb.SandboxBin, "status", "--name", sb.Name, "-o", "json").Output()
			if err != nil {
				t.Fatalf("sandbox status: %v\n%s", err, out)
			}
			var st observe.Status
			if err := json.Unmarshal(out, &st); err != nil {
				t.Fatalf("status JSON: %v\n%s", err, out)
			}
			if !st.Ready || len(st.Nodes) != sb.Workers+1 || !st.EgressGuard.OK {
				t.Fatalf("status not ready: %s", out)
			}
			total := int64(0)
			for _, n := range st.Nodes {
				total += n.GPUs
			}
			if total != int64(sb.Workers*sb.GPUsPerNode) {
				t.Errorf("status reports %d GPUs, want %d", total, sb.Workers*sb.GPUsPerNode)
			}
			ready := map[string]bool{}
			for _, m := range st.Models {
				ready[m.Name] = m.Ready && m.ReadyReplicas >= 1
			}
			for _, m := range []string{"phi-4-mini", "ministral-3b"} {
				if !ready[m] {
					t.Errorf("status does not report default model %s ready: %s", m, out)
				}
			}
			return ctx
		}).Feature()

	testenv.Test(t, nodes, gpus, safety, lifecycleFeature)
}

func gpuPod(name string, gpus int64) *corev1.Pod {
	q := *resource.NewQuantity(gpus, resource.DecimalSI)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "e2e-gpu"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "pause",
				// Preloaded in the node image: nothing is pulled.
				Image:           "registry.k8s.io/pause:" + versions.Pause,
				ImagePullPolicy: corev1.PullNever,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{mocker.GPUResource: q},
					Limits:   corev1.ResourceList{mocker.GPUResource: q},
				},
			}},
		},
	}
}

// nodeContainerIDs lists the Docker IDs of the sandbox's node containers.
func nodeContainerIDs(ctx context.Context, t *testing.T) []string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--no-trunc", "--filter", "label=io.x-k8s.kind.cluster="+sb.Name).Output()
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		t.Fatal("no node containers")
	}
	return ids
}
