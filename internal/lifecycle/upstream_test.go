package lifecycle

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/preflight"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestChooseProfile(t *testing.T) {
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	defer registry.Close()
	up := Prober{Client: registry.Client(), Targets: []preflight.Target{{Kind: preflight.Registry, URL: registry.URL}}}
	if p, why := up.ChooseProfile(context.Background()); p != ProfileUpstream {
		t.Errorf("registry answers: %s (%s)", p, why)
	}
	down := Prober{Targets: []preflight.Target{{Kind: preflight.Registry, URL: registry.URL}, {Kind: preflight.Registry, URL: closedURL(t)}}}
	start := time.Now()
	if p, why := down.ChooseProfile(context.Background()); p != ProfileOffline || !strings.Contains(why, "unreachable") {
		t.Errorf("one registry down: %s (%s)", p, why)
	}
	if took := time.Since(start); took > profileProbeTimeout+time.Second {
		t.Errorf("probe took %s", took)
	}
}

// The default targets name every chart and every registry the profile uses.
func TestUpstreamTargetsCoverEverySource(t *testing.T) {
	var text []string
	for _, tg := range UpstreamTargets() {
		text = append(text, tg.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"chart base 1.29.2", "chart istiod 1.29.2", "chart workspace", "chart keda 2.19.0", "chart keda-kaito-scaler",
		"registry registry-1.docker.io", "registry ghcr.io", "registry mcr.microsoft.com", "registry registry.k8s.io",
		"gateway-api-inference-extension/releases/download/v1.5.0/manifests.yaml",
		"image ghcr.io/llm-d/llm-d-inference-sim:v0.10.2", "image mcr.microsoft.com/oss/v2/llm-d/llm-d-inference-scheduler:v0.7.1",
		"image mcr.microsoft.com/aks/kaito/helm/llm-gateway-apikey:0.1.0", "image docker.io/istio/proxyv2:1.29.2",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no target %q in:\n%s", want, all)
		}
	}
}

// upUpstreamWithoutSources runs `up --profile upstream` against prober and checks the contract
// of a machine that cannot fetch: a one-line error naming --profile offline, within seconds,
// and no cluster, kubeconfig or state created.
func upUpstreamWithoutSources(t *testing.T, prober Prober) {
	t.Helper()
	name := "preflight-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-")
	kubeconfig := filepath.Join(t.TempDir(), "state", "kubeconfig")
	var out bytes.Buffer
	o := Options{Name: name, Profile: ProfileUpstream, Workers: 2, GPUsPerNode: 4, Models: "default",
		Kubeconfig: kubeconfig, Status: progress.New(&out), Prober: prober}
	start := time.Now()
	_, err := Up(context.Background(), o)
	took := time.Since(start)
	if err == nil {
		t.Fatal("up --profile upstream succeeded without its charts and images")
	}
	msg := err.Error()
	if !strings.Contains(msg, "use --profile offline") || strings.Contains(msg, "\n") {
		t.Errorf("error is not one line pointing at --profile offline: %q", msg)
	}
	if took > preflightTimeout+5*time.Second {
		t.Errorf("failing took %s", took)
	}
	if _, err := os.Stat(filepath.Dir(kubeconfig)); !os.IsNotExist(err) {
		t.Errorf("state directory created: %v", err)
	}
	if _, err := exec.LookPath("docker"); err == nil {
		ids, err := exec.Command("docker", "ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster="+name).Output()
		if err != nil {
			t.Logf("docker ps: %v (cannot check for nodes)", err)
		} else if len(bytes.TrimSpace(ids)) > 0 {
			t.Errorf("cluster nodes created: %s", ids)
		}
	}
	for _, l := range strings.Split(out.String(), "\n") {
		for _, forbidden := range []string{"egress guard", "Creating", "node image", "component image"} {
			if strings.Contains(l, forbidden) {
				t.Errorf("up went on after the preflight: %q", l)
			}
		}
	}
	t.Logf("failed in %s: %s", took.Round(time.Millisecond), msg)
}

func TestUpstreamFailsFastOnLoopbackWithNothingServing(t *testing.T) {
	closed := closedURL(t)
	upUpstreamWithoutSources(t, Prober{Targets: []preflight.Target{
		{Kind: preflight.ChartRepo, URL: closed + "/charts", Chart: "istiod", Version: "1.29.2"},
		{Kind: preflight.Registry, URL: closed},
	}})
}

// On this project's machines the real chart repositories and registries cannot be reached:
// the real preflight must say so. Where they can, the test would create a cluster, so it
// stops there.
func TestUpstreamFailsFastWithTheRealSources(t *testing.T) {
	if failed := preflight.Check(context.Background(), nil, UpstreamTargets(), preflightTimeout); len(failed) == 0 {
		t.Skip("this machine reaches every upstream source; the failure path cannot be shown here")
	}
	upUpstreamWithoutSources(t, Prober{})
}
