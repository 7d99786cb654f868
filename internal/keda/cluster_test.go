package keda

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/images"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// TestInstallIntoCluster installs KEDA and the scaler into a running sandbox and checks the
// whole chain for every autoscaled InferenceSet there: ScaledObject made by the scaler, Ready
// in KEDA, its HPA reading the metric through the external-metrics API. It needs a cluster,
// so it runs only when asked: SANDBOX_TEST_KEDA_CLUSTER=<sandbox name> with KUBECONFIG set.
func TestInstallIntoCluster(t *testing.T) {
	name := os.Getenv("SANDBOX_TEST_KEDA_CLUSTER")
	if name == "" || os.Getenv("KUBECONFIG") == "" {
		t.Skip("set SANDBOX_TEST_KEDA_CLUSTER=<name> and KUBECONFIG to install KEDA into a sandbox")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	status := progress.New(os.Stderr)
	kedaImage, err := Ensure(ctx, BuildOptions{Status: status})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "stackd")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "github.com/inference-sandbox/sandbox/cmd/stackd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building stackd: %v\n%s", err, out)
	}
	stackdImage, _, err := images.EnsureStackd(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	m := cluster.New(status)
	for _, img := range []string{kedaImage, stackdImage} {
		step := status.Start("Loading %s", img)
		_, err := m.LoadImage(ctx, name, img)
		if err := step.End(err); err != nil {
			t.Fatal(err)
		}
	}
	c, err := kube.New(os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	v := Values{Image: kedaImage, StackdImage: stackdImage, ScalerTiming: "fast"}
	for _, s := range []struct {
		name    string
		install func(context.Context, *kube.Client, Values) error
		ready   func(context.Context, *kube.Client, Values) error
	}{{"KEDA", Install, Ready}, {"scaler", InstallScaler, ScalerReady}} {
		step := status.Start("Installing %s", s.name)
		err := s.install(ctx, c, v)
		if err == nil {
			err = s.ready(ctx, c, v)
		}
		if err := step.End(err); err != nil {
			t.Fatal(err)
		}
	}

	isGVR := schema.GroupVersionResource{Group: "kaito.sh", Version: "v1alpha1", Resource: "inferencesets"}
	soGVR := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	sets, err := c.Dynamic.Resource(isGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range sets.Items {
		if is.GetAnnotations()["scaledobject.kaito.sh/auto-provision"] != "true" {
			continue
		}
		ns, n := is.GetNamespace(), is.GetName()
		err := kube.WaitFor(ctx, 2*time.Minute, time.Second, "ScaledObject "+ns+"/"+n+" Ready", func(ctx context.Context) (bool, string, error) {
			so, err := c.Dynamic.Resource(soGVR).Namespace(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			return condition(so, "Ready")
		})
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/apis/external.metrics.k8s.io/v1beta1/namespaces/%s/s0-vllm:num_requests_waiting", ns)
		err = kube.WaitFor(ctx, time.Minute, time.Second, "external metric of "+n, func(ctx context.Context) (bool, string, error) {
			raw, err := c.Clientset.CoreV1().RESTClient().Get().AbsPath(path).Param("labelSelector", "scaledobject.keda.sh/name="+n).DoRaw(ctx)
			if err != nil {
				return false, err.Error(), nil
			}
			t.Logf("%s: %s", n, raw)
			return true, "", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = kube.WaitFor(ctx, 2*time.Minute, time.Second, "HPA keda-hpa-"+n+" computing", func(ctx context.Context) (bool, string, error) {
			hpa, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			for _, cond := range hpa.Status.Conditions {
				if cond.Type == "ScalingActive" {
					return cond.Status == "True", cond.Reason + ": " + cond.Message, nil
				}
			}
			return false, "no ScalingActive condition", nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
