package preflight

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const index = `apiVersion: v1
entries:
  istiod:
  - name: istiod
    version: 1.29.2
  - name: istiod
    version: 1.28.0
  keda:
  - name: keda
    version: 2.19.0
`

// server is a real HTTP server on loopback that plays a chart repository, a registry and a
// release file.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/charts/index.yaml", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(index)) })
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	mux.HandleFunc("/broken/v2/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	mux.HandleFunc("/manifests.yaml", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("kind: List\n")) })
	mux.HandleFunc("/slow/v2/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// closedURL is a loopback address nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestCheckPassesWhenEverythingAnswers(t *testing.T) {
	s := server(t)
	failed := Check(context.Background(), s.Client(), []Target{
		{Kind: ChartRepo, URL: s.URL + "/charts", Chart: "istiod", Version: "1.29.2"},
		{Kind: ChartRepo, URL: s.URL + "/charts/", Chart: "keda", Version: "v2.19.0"},
		{Kind: Registry, URL: s.URL},
		{Kind: File, URL: s.URL + "/manifests.yaml"},
	}, 2*time.Second)
	if len(failed) != 0 {
		t.Fatalf("failed: %+v", failed)
	}
}

func TestCheckReportsEachFailure(t *testing.T) {
	s := server(t)
	closed := closedURL(t)
	for _, tc := range []struct {
		target Target
		want   string
	}{
		{Target{Kind: ChartRepo, URL: s.URL + "/charts", Chart: "istiod", Version: "1.30.0"}, "no version 1.30.0 of chart istiod"},
		{Target{Kind: ChartRepo, URL: s.URL + "/charts", Chart: "workspace", Version: "0.12.0"}, `no chart "workspace"`},
		{Target{Kind: ChartRepo, URL: s.URL + "/nothing", Chart: "keda", Version: "2.19.0"}, "404"},
		{Target{Kind: Registry, URL: s.URL + "/broken"}, "502"},
		{Target{Kind: Registry, URL: closed}, "connection refused"},
		{Target{Kind: File, URL: s.URL + "/missing.yaml"}, "404"},
		{Target{Kind: Registry, URL: s.URL + "/slow"}, "deadline exceeded"},
	} {
		start := time.Now()
		failed := Check(context.Background(), s.Client(), []Target{tc.target}, 300*time.Millisecond)
		if len(failed) != 1 {
			t.Errorf("%s: not reported", tc.target)
			continue
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: took %s despite the 300ms timeout", tc.target, took)
		}
		err := Error(failed)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want mention of %q", tc.target, err, tc.want)
		}
		if !strings.Contains(err.Error(), "use --profile offline") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: not one line pointing at --profile offline: %q", tc.target, err)
		}
	}
}

func TestErrorCountsTheRest(t *testing.T) {
	closed := closedURL(t)
	failed := Check(context.Background(), nil, []Target{{Kind: Registry, URL: closed}, {Kind: File, URL: closed + "/x"}, {Kind: Registry, URL: closed + "/y"}}, time.Second)
	if err := Error(failed); err == nil || !strings.Contains(err.Error(), "(and 2 more)") {
		t.Fatalf("%v", err)
	}
	if Error(nil) != nil {
		t.Fatal("no failures must be no error")
	}
}

func TestRegistryURL(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/istio/pilot:1.29.2":                              "https://registry-1.docker.io",
		"nginx:1.29-alpine":                                         "https://registry-1.docker.io",
		"library/nginx":                                             "https://registry-1.docker.io",
		"ghcr.io/llm-d/llm-d-inference-sim:v0.10.2":                 "https://ghcr.io",
		"oci://mcr.microsoft.com/aks/kaito/helm/llm-gateway-apikey": "https://mcr.microsoft.com",
		"registry.k8s.io/gateway-api-inference-extension/bbr":       "https://registry.k8s.io",
		"localhost:5000/x":                                          "https://localhost:5000",
	} {
		if got := RegistryURL(ref); got != want {
			t.Errorf("%s: %s, want %s", ref, got, want)
		}
	}
	targets := RegistryTargets([]string{"ghcr.io/a:1", "ghcr.io/b:2", "nginx"})
	if len(targets) != 2 {
		t.Fatalf("registries not deduplicated: %+v", targets)
	}
}
