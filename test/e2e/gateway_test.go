//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

var httpRouteGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// TestGateway drives the offline data path from this machine, through the gateway published
// on 127.0.0.1: API-key auth, body-based routing on the model, the catch-all 404. The model
// here is a simulator behind a plain Service route (InferencePool routing has its own tests).
func TestGateway(t *testing.T) {
	const model = "e2e-echo"
	ns := models.DefaultNamespace
	var base, key string
	f := features.New("gateway data path").
		WithLabel("tier", "pr").WithLabel("area", "routing").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			labels := map[string]string{"app": model}
			d := stackdDeployment(ns, model, 1, []string{"sim", "--model", model, "--port", "5000", "--mode", "echo"}, 5000,
				&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intOrPort(5000)}}, PeriodSeconds: 1})
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: model, Namespace: ns},
				Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 5000, TargetPort: intOrPort(5000)}}},
			}
			if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			route := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
				"metadata": map[string]any{"name": model + "-route", "namespace": ns},
				"spec": map[string]any{
					"parentRefs": []any{map[string]any{"name": models.GatewayName(ns)}},
					"rules": []any{map[string]any{
						"matches": []any{map[string]any{
							"path":    map[string]any{"type": "PathPrefix", "value": "/"},
							"headers": []any{map[string]any{"type": "Exact", "name": "X-Gateway-Model-Name", "value": model}},
						}},
						"backendRefs": []any{map[string]any{"name": model, "port": int64(5000)}},
					}},
				},
			}}
			dyn, err := dynamic.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dyn.Resource(httpRouteGVR).Namespace(ns).Create(ctx, route, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c, err := kube.NewForConfig(cfg.Client().RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			if key, err = models.APIKey(ctx, c, ns); err != nil {
				t.Fatal(err)
			}
			if sb.Up.GatewayURL == "" {
				t.Fatal("up reported no gateway URL")
			}
			base = sb.Up.GatewayURL
			if err := c.WaitDeployment(ctx, ns, model, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			return ctx
		}).
		Assess("the right key gets 200 from the model, with the model echoed", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			var body []byte
			eventually(t, 60*time.Second, "200 through the gateway", func() (bool, string) {
				status, b, _, err := chat(ctx, base, key, model)
				body = b
				return err == nil && status == http.StatusOK, fmt.Sprintf("%d %v %s", status, err, b)
			})
			var resp struct {
				Model   string `json:"model"`
				Choices []struct {
					Message struct{ Content string } `json:"message"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if resp.Model != model || len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
				t.Fatalf("unexpected answer: %s", body)
			}
			return ctx
		}).
		Assess("no key, a wrong key: 401 JSON from authz", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			for _, k := range []string{"", "sk-not-the-key"} {
				status, b, h, err := chat(ctx, base, k, model)
				if err != nil {
					t.Fatal(err)
				}
				assertOpenAIError(t, status, b, h, http.StatusUnauthorized, "authz")
			}
			return ctx
		}).
		Assess("an unknown model: 404 model_not_found JSON", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			status, b, h, err := chat(ctx, base, key, "no-such-model")
			if err != nil {
				t.Fatal(err)
			}
			env := assertOpenAIError(t, status, b, h, http.StatusNotFound, "")
			if env.Error.Code != "model_not_found" {
				t.Fatalf("code %v, want model_not_found: %s", env.Error.Code, b)
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			_ = cs.AppsV1().Deployments(ns).Delete(ctx, model, metav1.DeleteOptions{})
			_ = cs.CoreV1().Services(ns).Delete(ctx, model, metav1.DeleteOptions{})
			if dyn, err := dynamic.NewForConfig(cfg.Client().RESTConfig()); err == nil {
				_ = dyn.Resource(httpRouteGVR).Namespace(ns).Delete(ctx, model+"-route", metav1.DeleteOptions{})
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

func chat(ctx context.Context, base, key, model string) (int, []byte, http.Header, error) {
	payload := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello sandbox"}],"max_tokens":8}`, model)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewBufferString(payload))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

func assertOpenAIError(t *testing.T, status int, body []byte, h http.Header, wantStatus int, wantSource string) openai.ErrorEnvelope {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if wantSource != "" && h.Get(openai.ErrorSourceHeader) != wantSource {
		t.Errorf("%s = %q, want %q", openai.ErrorSourceHeader, h.Get(openai.ErrorSourceHeader), wantSource)
	}
	var env openai.ErrorEnvelope
	if err := json.Unmarshal(body, &env); err != nil || env.Error.Message == "" || env.Error.Type == "" {
		t.Fatalf("not an OpenAI error envelope (%v): %s", err, body)
	}
	return env
}
