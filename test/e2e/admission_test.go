//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/components/epp/objective"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// objectiveHeader names the InferenceObjective a request belongs to (GAIE's header).
const objectiveHeader = "x-gateway-inference-objective"

// answer is one request's outcome, kept whole so that a failure can print what was seen.
type answer struct {
	status int
	body   []byte
	header http.Header
	took   time.Duration
	err    error
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("error after %s: %v", a.took.Round(time.Millisecond), a.err)
	}
	return fmt.Sprintf("%d after %s, %s=%q: %s", a.status, a.took.Round(time.Millisecond),
		openai.ErrorSourceHeader, a.header.Get(openai.ErrorSourceHeader), bytes.TrimSpace(a.body))
}

// short is the status and time alone, for logs of expected answers.
func (a answer) short() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d in %s", a.status, a.took.Round(time.Millisecond))
}

// send posts one chat completion of maxTokens tokens through the gateway, naming the
// objective in its header unless it is empty.
func send(ctx context.Context, base, key, mdl, obj string, maxTokens int, timeout time.Duration) answer {
	payload := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"admission"}],"max_tokens":%d,"ignore_eos":true}`, mdl, maxTokens)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(payload))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	if obj != "" {
		req.Header.Set(objectiveHeader, obj)
	}
	began := time.Now()
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(began)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, header: resp.Header, took: time.Since(began), err: err}
}

// podFamilies scrapes a pod's Prometheus endpoint through the API server's pod proxy.
func podFamilies(ctx context.Context, cs kubernetes.Interface, ns, pod, port string) (map[string]*dto.MetricFamily, error) {
	raw, err := cs.CoreV1().Pods(ns).ProxyGet("http", pod, port, "/metrics", nil).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping %s/%s:%s: %w", ns, pod, port, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics of %s: %w", pod, err)
	}
	return fams, nil
}

// sumWhere adds the values (counter or gauge) of a family's series whose labels include want.
func sumWhere(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var n float64
	fam := fams[name]
	if fam == nil {
		return 0
	}
next:
	for _, m := range fam.GetMetric() {
		for k, v := range want {
			if label(m, k) != v {
				continue next
			}
		}
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return n
}

// TestAdmission proves the endpoint picker's admission end to end: while the pool is saturated
// (utilization detector, queueDepthThreshold 5), a request whose InferenceObjective has a
// negative priority is shed with an OpenAI-shaped 429 from the picker, a request without an
// objective is admitted and served, and once the queue drains the sheddable request is served.
func TestAdmission(t *testing.T) {
	const (
		m   = "e2e-admission"
		obj = "e2e-sheddable"
		// 1 request at a time, 25 ms per token: a 100-token request takes ~2.5 s, so the
		// pressure's requests wait in the simulator's queue, where the picker sees them.
		simArgs    = "--max-num-seqs 1 --latency-calculator constant --time-to-first-token 20ms --time-to-first-token-std-dev 0 --inter-token-latency 25ms --inter-token-latency-std-dev 0 --time-factor-under-load 1"
		longTokens = 100
		// 8 loops of long requests: 1 running, 7 waiting (saturation 7/5) in steady state.
		pressure = 8
	)
	f := features.New("admission").
		// --sim-args and the stackd picker are the offline profile's.
		WithLabel("tier", "pr").WithLabel("area", "admission").WithLabel("profile", "offline").
		Assess("a sheddable objective gets the picker's 429 while the pool is saturated, priority 0 is served, and after the drain both are", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			ns := models.DefaultNamespace
			c, err := kube.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			cs := clientset(t, cfg)
			began := time.Now()
			err = models.Deploy(ctx, c, models.DeployOptions{Name: m, Namespace: ns, Replicas: 1, SimulatorArgs: simArgs,
				Kubeconfig: sb.Kubeconfig, Wait: 3 * time.Minute})
			defer func() {
				// Deleted, and its pod gone, so that later features see the cluster as before.
				if err := models.Delete(context.Background(), c, sb.Kubeconfig, ns, m); err != nil {
					t.Errorf("deleting %s: %v", m, err)
					return
				}
				eventually(t, 2*time.Minute, m+" pods gone", func() (bool, string) {
					pods := modelPods(context.Background(), t, cs, m)
					return len(pods) == 0, fmt.Sprintf("%d pods left", len(pods))
				})
			}()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s deployed and ready in %s", m, time.Since(began).Round(time.Second))
			pods := modelPods(ctx, t, cs, m)
			if len(pods) != 1 {
				t.Fatalf("%s has %d pods, want 1", m, len(pods))
			}
			simPod := pods[0].Name
			waiting := func() (float64, error) {
				fams, err := podFamilies(ctx, cs, ns, simPod, "5000")
				if err != nil {
					return 0, err
				}
				return sumWhere(fams, "vllm:num_requests_waiting", nil), nil
			}

			// The objective: priority -1 on this model's pool.
			dyn, err := dynamic.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			objU := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": objective.Group + "/" + objective.Version,
				"kind":       objective.Kind,
				"metadata":   map[string]any{"name": obj, "namespace": ns},
				"spec":       map[string]any{"priority": int64(-1), "poolRef": map[string]any{"name": m + "-inferencepool"}},
			}}
			if _, err := dyn.Resource(objective.GVR).Namespace(ns).Create(ctx, objU, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating InferenceObjective %s: %v", obj, err)
			}
			defer func() {
				err := dyn.Resource(objective.GVR).Namespace(ns).Delete(context.Background(), obj, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("deleting InferenceObjective %s: %v", obj, err)
				}
			}()

			key := apiKey(ctx, t, cfg)
			base := sb.Up.GatewayURL
			// Idle pool: the sheddable request is served.
			var a answer
			eventually(t, time.Minute, "a sheddable request to the idle pool answers 200", func() (bool, string) {
				a = send(ctx, base, key, m, obj, 8, 30*time.Second)
				return a.err == nil && a.status == http.StatusOK, a.String()
			})
			t.Logf("idle pool, sheddable: %s", a.short())

			// Pressure: requests without an objective (priority 0), never shed.
			heavy := &generator{}
			stop := make(chan struct{})
			pressureStart := time.Now()
			wg := heavy.run(ctx, stop, base, key, m, pressure, longTokens, 0)
			stopped := false
			stopPressure := func() {
				if !stopped {
					stopped = true
					close(stop)
					wg.Wait()
				}
			}
			defer stopPressure()

			var seen float64
			eventually(t, time.Minute, "the simulator's queue at >= 6 waiting", func() (bool, string) {
				n, err := waiting()
				seen = n
				if err != nil {
					return false, err.Error()
				}
				return n >= 6, fmt.Sprintf("vllm:num_requests_waiting %v", n)
			})
			t.Logf("queue at %v waiting %s after the pressure began", seen, time.Since(pressureStart).Round(100*time.Millisecond))

			// Saturated: the sheddable request is shed by the picker. The picker scrapes every
			// 50 ms and may need a moment to see the objective, so a few admitted tries are allowed.
			var tries []string
			var shed answer
			eventually(t, 90*time.Second, "a sheddable request shed with 429 while the pool is saturated", func() (bool, string) {
				shed = send(ctx, base, key, m, obj, 8, 60*time.Second)
				tries = append(tries, shed.short())
				return shed.err == nil && shed.status == http.StatusTooManyRequests,
					fmt.Sprintf("last: %s; all tries: %v", shed, tries)
			})
			t.Logf("saturated pool, sheddable: %s (tries %v)", shed, tries)
			checkShed(t, shed)
			if shed.took > 5*time.Second {
				t.Errorf("the 429 took %s: a shed request should be answered at once, not queued", shed.took)
			}

			// Still saturated: a request without an objective and one naming an unknown objective
			// (both priority 0) are admitted and wait their turn; a sheddable one sent meanwhile
			// is shed again.
			prio0 := make(chan answer, 2)
			for _, o := range []string{"", "no-such-objective"} {
				go func() { prio0 <- send(ctx, base, key, m, o, 8, 2*time.Minute) }()
			}
			time.Sleep(300 * time.Millisecond)
			again := send(ctx, base, key, m, obj, 8, 60*time.Second)
			t.Logf("saturated pool, sheddable again: %s", again)
			if again.err != nil || again.status != http.StatusTooManyRequests {
				t.Errorf("a second sheddable request during saturation: %s, want 429", again)
			} else {
				checkShed(t, again)
			}
			for i := 0; i < 2; i++ {
				p := <-prio0
				t.Logf("saturated pool, priority 0: %s", p.short())
				if p.err != nil || p.status != http.StatusOK {
					t.Errorf("a priority-0 request during saturation: %s, want 200", p)
				}
			}

			// Drain: stop the pressure, wait for an empty queue, then the sheddable request is served.
			stopPressure()
			if heavy.ok.Load() == 0 || heavy.serverErrors.Load() > 0 || heavy.otherErrors.Load() > 0 {
				t.Errorf("pressure (priority 0): %d ok, %d 5xx, %d other (last: %v)",
					heavy.ok.Load(), heavy.serverErrors.Load(), heavy.otherErrors.Load(), heavy.lastErr.Load())
			}
			t.Logf("pressure: %d requests served in %s, slowest %s", heavy.ok.Load(),
				time.Since(pressureStart).Round(time.Second), time.Duration(heavy.slowest.Load()).Round(time.Millisecond))
			eventually(t, time.Minute, "the queue drained", func() (bool, string) {
				n, err := waiting()
				if err != nil {
					return false, err.Error()
				}
				return n == 0, fmt.Sprintf("vllm:num_requests_waiting %v", n)
			})
			eventually(t, 30*time.Second, "a sheddable request after the drain answers 200", func() (bool, string) {
				a = send(ctx, base, key, m, obj, 8, 30*time.Second)
				return a.err == nil && a.status == http.StatusOK, a.String()
			})
			t.Logf("drained pool, sheddable: %s", a.short())

			// The picker counted it: the sheds as ResourceExhausted errors, the admitted requests by priority.
			fams := eppFamilies(ctx, t, cs, ns, m+"-inferencepool-epp")
			sheds := sumWhere(fams, "inference_objective_request_error_total", map[string]string{"model_name": m, "error_code": "ResourceExhausted"})
			p1 := sumWhere(fams, "inference_objective_request_total", map[string]string{"model_name": m, "priority": "-1"})
			p0 := sumWhere(fams, "inference_objective_request_total", map[string]string{"model_name": m, "priority": "0"})
			t.Logf("picker metrics: %v ResourceExhausted errors, %v requests of priority -1, %v of priority 0", sheds, p1, p0)
			if sheds < 2 {
				t.Errorf("inference_objective_request_error_total{error_code=ResourceExhausted} = %v, want >= 2 (two 429s seen)", sheds)
			}
			if p1 < 2 {
				t.Errorf("inference_objective_request_total{priority=\"-1\"} = %v, want >= 2 (idle and drained pool)", p1)
			}
			if p0 < float64(heavy.ok.Load())+2 {
				t.Errorf("inference_objective_request_total{priority=\"0\"} = %v, want >= %d", p0, heavy.ok.Load()+2)
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// checkShed asserts the picker's 429: OpenAI error envelope, code resource_exhausted, source epp.
func checkShed(t *testing.T, a answer) {
	t.Helper()
	env := assertOpenAIError(t, a.status, a.body, a.header, http.StatusTooManyRequests, "epp")
	if env.Error.Code != "resource_exhausted" || env.Error.Type != "rate_limit_error" {
		t.Errorf("shed error: type %q code %v, want rate_limit_error/resource_exhausted: %s", env.Error.Type, env.Error.Code, a.body)
	}
	if !strings.Contains(env.Error.Message, "e2e-sheddable") {
		t.Errorf("shed error message does not name the objective: %q", env.Error.Message)
	}
}

// eppFamilies scrapes the ready picker pod of a Deployment on its metrics port (9090).
func eppFamilies(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, deploy string) map[string]*dto.MetricFamily {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, deploy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	if err != nil {
		t.Fatal(err)
	}
	var ready []string
	for _, p := range pods.Items {
		if podReady(&p) {
			ready = append(ready, p.Name)
		}
	}
	if len(ready) != 1 {
		t.Fatalf("picker %s/%s has ready pods %v, want exactly one (its counters are per pod)", ns, deploy, ready)
	}
	fams, err := podFamilies(ctx, cs, ns, ready[0], "9090")
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
