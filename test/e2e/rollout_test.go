//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/kube"
)

// TestRollingRestart restarts every component on a request's path, one after the other, under
// a steady stream of requests: upgrading the sandbox (a new stackd image rolls them all) must
// not fail a single request. Each component keeps serving until its Service has dropped it
// (preStop sleep, or the gateway's own drain) and stops gracefully.
func TestRollingRestart(t *testing.T) {
	f := features.New("rolling restart").
		// The deployments it restarts are the offline profile's.
		WithLabel("tier", "pr").WithLabel("area", "gateway").WithLabel("profile", "offline").
		Assess("restarting authz, BBR, the endpoint picker, the gateway and model-not-found fails no request", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, err := kube.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			const m = "phi-4-mini"
			trickle := &generator{}
			stop := make(chan struct{})
			wg := trickle.run(ctx, stop, sb.Up.GatewayURL, apiKey(ctx, t, cfg), m, 2, 4, 200*time.Millisecond)
			stopped := false
			defer func() {
				if !stopped {
					close(stop)
					wg.Wait()
				}
			}()
			for _, d := range []struct{ ns, name string }{
				{"sandbox-system", "apikey-authz"},
				{"sandbox-system", "body-based-router"},
				{"models", m + "-inferencepool-epp"},
				{"models", "models-gw-sandbox"},
				{"sandbox-system", "model-not-found"},
			} {
				began := time.Now()
				restart(ctx, t, c, d.ns, d.name)
				t.Logf("%s/%s rolled in %s", d.ns, d.name, time.Since(began).Round(100*time.Millisecond))
			}
			close(stop)
			wg.Wait()
			stopped = true
			if trickle.ok.Load() == 0 || trickle.serverErrors.Load() > 0 || trickle.otherErrors.Load() > 0 {
				t.Fatalf("during the restarts: %d ok, %d 5xx, %d other errors (last: %v)",
					trickle.ok.Load(), trickle.serverErrors.Load(), trickle.otherErrors.Load(), trickle.lastErr.Load())
			}
			t.Logf("%d requests during the restarts, none failed, slowest %s", trickle.ok.Load(),
				time.Duration(trickle.slowest.Load()).Round(time.Millisecond))
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// restart does what `kubectl rollout restart` does and waits until the old pods are gone.
func restart(ctx context.Context, t *testing.T, c *kube.Client, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339Nano))
	if _, err := c.Clientset.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("restarting %s/%s: %v", ns, name, err)
	}
	err := kube.WaitFor(ctx, 3*time.Minute, time.Second, "rollout of "+ns+"/"+name, func(ctx context.Context) (bool, string, error) {
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if ok, why := kube.DeploymentReady(d); !ok {
			return false, why, nil
		}
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return false, err.Error(), nil
		}
		// The old pod is gone only after its preStop sleep and graceful stop.
		return len(pods.Items) == int(d.Status.Replicas), fmt.Sprintf("%d pods, want %d", len(pods.Items), d.Status.Replicas), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
