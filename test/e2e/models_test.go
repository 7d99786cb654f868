//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
)

var defaultModels = []string{"phi-4-mini", "ministral-3b"}

// modelPods lists the serving pods of a model (the InferenceSet's created-by label).
func modelPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, model string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(models.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "inferenceset.kaito.sh/created-by=" + model})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}

// successByModel scrapes a pod's simulator through the API server's pod proxy and returns
// vllm:request_success_total summed per model_name.
func successByModel(ctx context.Context, cs kubernetes.Interface, pod string) (map[string]float64, error) {
	families, err := podFamilies(ctx, cs, models.DefaultNamespace, pod, "5000")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	fam := families["vllm:request_success_total"]
	if fam == nil {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		out[label(m, "model_name")] += m.GetCounter().GetValue()
	}
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func apiKey(ctx context.Context, t *testing.T, cfg *envconf.Config) string {
	t.Helper()
	c, err := kube.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	key, err := models.APIKey(ctx, c, models.DefaultNamespace)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func listModels(ctx context.Context, t *testing.T, cfg *envconf.Config) map[string]models.Model {
	t.Helper()
	c, err := kube.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	list, err := models.List(ctx, c, models.ListOptions{Namespace: models.DefaultNamespace})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]models.Model{}
	for _, m := range list {
		out[m.Name] = m
	}
	return out
}

// generate sends requests for a model from `workers` loops until stop is closed, counting
// outcomes; maxTokens with ignore_eos fixes each request's length (the simulator's latency
// profile makes it take time).
type generator struct {
	ok, serverErrors, otherErrors atomic.Int64
	lastErr                       atomic.Value
	// slowest is the longest request in nanoseconds: queueing shows here before it fails.
	slowest atomic.Int64
}

func (g *generator) run(ctx context.Context, stop <-chan struct{}, base, key, model string, workers, maxTokens int, pause time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 60 * time.Second}
	payload := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"count slowly"}],"max_tokens":%d,"ignore_eos":true}`, model, maxTokens)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				began := time.Now()
				resp, err := client.Do(req)
				if d := int64(time.Since(began)); d > g.slowest.Load() {
					g.slowest.Store(d)
				}
				switch {
				case err != nil:
					g.otherErrors.Add(1)
					g.lastErr.Store(err.Error())
				case resp.StatusCode >= 500:
					g.serverErrors.Add(1)
					g.lastErr.Store(resp.Status)
				case resp.StatusCode == http.StatusOK:
					g.ok.Add(1)
				default:
					g.otherErrors.Add(1)
					g.lastErr.Store(resp.Status)
				}
				if resp != nil {
					resp.Body.Close()
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return &wg
}

func TestModels(t *testing.T) {
	routing := features.New("default models").
		WithLabel("tier", "pr").WithLabel("area", "routing").
		Assess("both models answer through the gateway and each pod serves only its own model", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			key := apiKey(ctx, t, cfg)
			for _, m := range defaultModels {
				for i := 0; i < 5; i++ {
					var status int
					var body []byte
					eventually(t, 2*time.Minute, m+" answers 200", func() (bool, string) {
						var err error
						status, body, _, err = chat(ctx, sb.Up.GatewayURL, key, m)
						return err == nil && status == http.StatusOK, fmt.Sprintf("%d %v %s", status, err, body)
					})
					if !bytes.Contains(body, []byte(`"model":"`+m+`"`)) {
						t.Fatalf("%s: answer names another model: %s", m, body)
					}
				}
			}
			cs := clientset(t, cfg)
			for _, m := range defaultModels {
				served := 0.0
				for _, p := range modelPods(ctx, t, cs, m) {
					counts, err := successByModel(ctx, cs, p.Name)
					if err != nil {
						t.Fatal(err)
					}
					for name, n := range counts {
						if name != m && n > 0 {
							t.Errorf("pod %s of %s served %v requests for %s", p.Name, m, n, name)
						}
					}
					served += counts[m]
				}
				if served < 5 {
					t.Errorf("%s pods report %v successful requests, want >= 5", m, served)
				}
			}
			return ctx
		}).
		Assess("load below the threshold for a full window causes no scaling", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			before := listModels(ctx, t, cfg)["ministral-3b"].Replicas
			stop := make(chan struct{})
			g := &generator{}
			// 2 concurrent short requests: a simulator runs 5 at once, so nothing waits.
			wg := g.run(ctx, stop, sb.Up.GatewayURL, apiKey(ctx, t, cfg), "ministral-3b", 2, 8, 100*time.Millisecond)
			deadline := time.Now().Add(45 * time.Second) // > fast preset's 30 s down and 15 s up windows
			for time.Now().Before(deadline) {
				if r := listModels(ctx, t, cfg)["ministral-3b"].Replicas; r != before {
					close(stop)
					wg.Wait()
					t.Fatalf("replicas changed %d -> %d under load below the threshold", before, r)
				}
				time.Sleep(3 * time.Second)
			}
			close(stop)
			wg.Wait()
			if g.ok.Load() == 0 || g.serverErrors.Load() > 0 {
				t.Fatalf("low load: %d ok, %d 5xx, %d other (%v)", g.ok.Load(), g.serverErrors.Load(), g.otherErrors.Load(), g.lastErr.Load())
			}
			return ctx
		}).Feature()

	// The pressure is sized so that a request queued behind it waits seconds, not minutes: with
	// 400-token requests, a trickle request that reached the only replica at the start waited
	// ~60 s behind 35 queued ones (FCFS, as vLLM does; queued requests never move to new replicas)
	// and hit the client timeout, which looked like a request lost during scale-down.
	scaling := features.New("autoscaling").
		WithLabel("tier", "pr").WithLabel("area", "scaling").
		Assess("queue pressure adds a replica that serves; when it stops, replicas return to the minimum with no failed request", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			const m = "phi-4-mini"
			cs := clientset(t, cfg)
			key := apiKey(ctx, t, cfg)
			start := listModels(ctx, t, cfg)[m]
			if start.Replicas != int32(start.MinReplicas) {
				t.Fatalf("%s starts at %d replicas, want its minimum %d", m, start.Replicas, start.MinReplicas)
			}
			original := map[string]bool{}
			for _, p := range modelPods(ctx, t, cs, m) {
				original[p.Name] = true
			}

			// A steady trickle of short requests runs through the whole test: it must never fail.
			trickle := &generator{}
			stopTrickle := make(chan struct{})
			trickleWG := trickle.run(ctx, stopTrickle, sb.Up.GatewayURL, key, m, 1, 4, 500*time.Millisecond)
			defer func() {
				select {
				case <-stopTrickle:
				default:
					close(stopTrickle)
				}
				trickleWG.Wait()
			}()

			// Pressure: 40 in flight, ~1 s each, against 5 slots per simulator: 35 waiting is far
			// above the threshold of 10 per replica.
			heavy := &generator{}
			stopHeavy := make(chan struct{})
			pressureStart := time.Now()
			heavyWG := heavy.run(ctx, stopHeavy, sb.Up.GatewayURL, key, m, 40, 100, 0)
			var newPod string
			eventually(t, 3*time.Minute, "a new replica Ready and serving", func() (bool, string) {
				for _, p := range modelPods(ctx, t, cs, m) {
					if original[p.Name] || !podReady(&p) {
						continue
					}
					counts, err := successByModel(ctx, cs, p.Name)
					if err == nil && counts[m] > 0 {
						newPod = p.Name
						return true, ""
					}
				}
				return false, fmt.Sprintf("replicas %d", listModels(ctx, t, cfg)[m].Replicas)
			})
			t.Logf("new replica %s served traffic %s after the pressure began (on node %s)", newPod,
				time.Since(pressureStart).Round(time.Second), podNode(ctx, cs, newPod))
			close(stopHeavy)
			heavyWG.Wait()
			if heavy.ok.Load() == 0 {
				t.Fatalf("no heavy request succeeded (%v)", heavy.lastErr.Load())
			}

			scaleDownStart := time.Now()
			eventually(t, 4*time.Minute, "replicas back to the minimum", func() (bool, string) {
				cur := listModels(ctx, t, cfg)[m]
				return cur.Replicas == int32(cur.MinReplicas) && cur.ReadyReplicas == cur.Replicas,
					fmt.Sprintf("replicas %d ready %d", cur.Replicas, cur.ReadyReplicas)
			})
			t.Logf("back to the minimum %s after the pressure stopped", time.Since(scaleDownStart).Round(time.Second))
			time.Sleep(5 * time.Second) // requests in flight during the last removal finish
			close(stopTrickle)
			trickleWG.Wait()
			if trickle.serverErrors.Load() > 0 || trickle.otherErrors.Load() > 0 || trickle.ok.Load() == 0 {
				t.Fatalf("trickle during scaling: %d ok, %d 5xx, %d other errors (last: %v)",
					trickle.ok.Load(), trickle.serverErrors.Load(), trickle.otherErrors.Load(), trickle.lastErr.Load())
			}
			t.Logf("trickle: %d requests, none failed, slowest %s", trickle.ok.Load(), time.Duration(trickle.slowest.Load()).Round(time.Millisecond))
			return ctx
		}).Feature()

	capacity := features.New("GPU capacity").
		WithLabel("tier", "pr").WithLabel("area", "scaling").
		Assess("more replicas than free fake GPUs leaves the extra pods Pending, visible in model list", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			const m = "gpu-hog"
			c, err := kube.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			total := sb.Workers * sb.GPUsPerNode
			// every GPU plus two: whatever the default models hold, at least two cannot fit
			want := total + 2
			err = models.Deploy(ctx, c, models.DeployOptions{Name: m, Namespace: models.DefaultNamespace, Replicas: want, Kubeconfig: sb.Kubeconfig})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := models.Delete(context.Background(), c, sb.Kubeconfig, models.DefaultNamespace, m); err != nil {
					t.Errorf("deleting %s: %v", m, err)
				}
			}()
			cs := clientset(t, cfg)
			eventually(t, 2*time.Minute, "extra replicas Pending for want of GPUs", func() (bool, string) {
				pending, unschedulable := 0, 0
				for _, p := range modelPods(ctx, t, cs, m) {
					if p.Status.Phase == corev1.PodPending && p.Spec.NodeName == "" {
						pending++
						for _, cond := range p.Status.Conditions {
							if cond.Type == corev1.PodScheduled && strings.Contains(cond.Message, "nvidia.com/gpu") {
								unschedulable++
							}
						}
					}
				}
				return pending >= 2 && unschedulable == pending, fmt.Sprintf("%d pending, %d for GPUs", pending, unschedulable)
			})
			eventually(t, 30*time.Second, "model list explains it", func() (bool, string) {
				got := listModels(ctx, t, cfg)[m]
				return !got.Ready && strings.Contains(strings.ToLower(got.Message), "gpu"), got.Message
			})
			return ctx
		}).Feature()

	testenv.Test(t, routing, scaling, capacity)
}

func podNode(ctx context.Context, cs kubernetes.Interface, pod string) string {
	p, err := cs.CoreV1().Pods(models.DefaultNamespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "?"
	}
	return p.Spec.NodeName
}
