//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// sandboxJSON runs the sandbox binary against the suite's sandbox and decodes its JSON output.
func sandboxJSON(ctx context.Context, t *testing.T, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sb.SandboxBin, append(args, "--name", sb.Name, "--kubeconfig", sb.Kubeconfig)...)
	b, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("sandbox %v: %v\n%s", args, err, stderr)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("sandbox %v printed no JSON: %v\n%s", args, err, b)
	}
}

func TestLoad(t *testing.T) {
	const m = "phi-4-mini"
	f := features.New("load and chat").
		WithLabel("tier", "pr").WithLabel("area", "load").
		Assess("`sandbox load -o json` totals match the pods' own counters, read through the pod proxy", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			total := func() float64 {
				var n float64
				for _, p := range modelPods(ctx, t, cs, m) {
					c, err := successByModel(ctx, cs, p.Name)
					if err != nil {
						t.Fatal(err)
					}
					n += c[m]
				}
				return n
			}
			before := total()
			// Two clients of short answers stay below the autoscaling threshold (see TestModels),
			// so the features after this one start from the minimum replicas.
			var rep struct {
				Requests, Succeeded int
				StatusCodes         map[string]int `json:"statusCodes"`
				TTFT                struct {
					Count int     `json:"count"`
					P50   float64 `json:"p50Ms"`
				} `json:"ttft"`
				Pods []struct {
					Pod      string  `json:"pod"`
					Requests float64 `json:"requests"`
				} `json:"pods"`
				PodError string `json:"podError"`
			}
			sandboxJSON(ctx, t, &rep, "load", "--model", m, "--concurrency", "2", "--requests", "40", "--max-tokens", "8", "-o", "json")
			if rep.Succeeded != 40 || rep.StatusCodes["200"] != 40 || rep.TTFT.Count != 40 || rep.TTFT.P50 <= 0 {
				t.Fatalf("load report: %+v", rep)
			}
			if rep.PodError != "" || len(rep.Pods) == 0 {
				t.Fatalf("no per-pod share: %q", rep.PodError)
			}
			var fromReport float64
			var names []string
			for _, p := range modelPods(ctx, t, cs, m) {
				names = append(names, p.Name)
			}
			for _, p := range rep.Pods {
				fromReport += p.Requests
				if !slices.Contains(names, p.Pod) {
					t.Errorf("report names pod %s, not one of %v", p.Pod, names)
				}
			}
			if after := total(); after-before != 40 || fromReport != 40 {
				t.Errorf("pods counted %v new requests, the report's pods %v; want 40", after-before, fromReport)
			}
			return ctx
		}).
		Assess("`sandbox chat` names the pod the endpoint picker chose", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			var r struct {
				Answer    string `json:"answer"`
				Pod       string `json:"pod"`
				PodSource string `json:"podSource"`
				PodError  string `json:"podError"`
			}
			sandboxJSON(ctx, t, &r, "chat", "--model", m, "--max-tokens", "8", "-o", "json", "Which pod are you?")
			var names []string
			for _, p := range modelPods(ctx, t, clientset(t, cfg), m) {
				names = append(names, p.Name)
			}
			if r.Answer == "" || !slices.Contains(names, r.Pod) || r.PodSource != "endpoint-picker" {
				t.Errorf("chat: %+v; pods %v", r, names)
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}
