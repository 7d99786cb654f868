package preflight

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// registry is a real HTTPS server on loopback playing a registry that hands out anonymous
// pull tokens (as Docker Hub and GHCR do) and knows a few tags.
func registry(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	tags := map[string]bool{"/v2/llm-d/sim/manifests/v0.10.2": true, "/v2/aks/helm/llm-gateway-apikey/manifests/0.1.0": true}
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("service") != "test-registry" || !strings.HasSuffix(r.URL.Query().Get("scope"), ":pull") {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"token":"anon-`+strings.TrimPrefix(r.URL.Query().Get("scope"), "repository:")+`"}`)
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		repo := strings.TrimPrefix(r.URL.Path[:strings.Index(r.URL.Path, "/manifests/")], "/v2/")
		if r.Header.Get("Authorization") != "Bearer anon-"+repo+":pull" {
			w.Header().Set("Www-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test-registry",scope="repository:%s:pull"`, srv.URL, repo))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/vnd.oci.image.index.v1+json") {
			http.Error(w, "no index accepted", http.StatusNotAcceptable)
			return
		}
		if r.Method != http.MethodHead || !tags[r.URL.Path] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "https://")
}

func TestImageTargets(t *testing.T) {
	srv, host := registry(t)
	ok := []Target{
		{Kind: Image, URL: host + "/llm-d/sim:v0.10.2"},
		{Kind: Image, URL: "oci://" + host + "/aks/helm/llm-gateway-apikey", Version: "0.1.0"},
	}
	if failed := Check(context.Background(), srv.Client(), ok, 2*time.Second); len(failed) > 0 {
		t.Fatalf("existing tags reported missing: %v", Error(failed))
	}
	for _, tc := range []struct {
		target Target
		want   string
	}{
		{Target{Kind: Image, URL: host + "/llm-d/sim:v9.9.9"}, "no tag v9.9.9 of llm-d/sim"},
		{Target{Kind: Image, URL: "oci://" + host + "/aks/helm/llm-gateway-apikey", Version: "0.0.1"}, "no tag 0.0.1"},
	} {
		failed := Check(context.Background(), srv.Client(), []Target{tc.target}, 2*time.Second)
		if len(failed) != 1 || !strings.Contains(Error(failed).Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.target, Error(failed), tc.want)
		}
	}
}

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct{ ref, version, base, repo, tag string }{
		{"nginx:1.29-alpine", "", "https://registry-1.docker.io", "library/nginx", "1.29-alpine"},
		{"docker.io/library/nginx:1.29-alpine", "", "https://registry-1.docker.io", "library/nginx", "1.29-alpine"},
		{"docker.io/istio/pilot:1.29.2", "", "https://registry-1.docker.io", "istio/pilot", "1.29.2"},
		{"ghcr.io/llm-d/llm-d-inference-sim:v0.10.2", "", "https://ghcr.io", "llm-d/llm-d-inference-sim", "v0.10.2"},
		{"oci://registry.k8s.io/gateway-api-inference-extension/charts/body-based-routing", "v1.5.0", "https://registry.k8s.io", "gateway-api-inference-extension/charts/body-based-routing", "v1.5.0"},
		{"localhost:5000/x", "", "https://localhost:5000", "x", "latest"},
	} {
		base, repo, tag, err := splitRef(tc.ref, tc.version)
		if err != nil || base != tc.base || repo != tc.repo || tag != tc.tag {
			t.Errorf("%s: %s %s %s %v, want %s %s %s", tc.ref, base, repo, tag, err, tc.base, tc.repo, tc.tag)
		}
	}
}
