package addons

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/inference-sandbox/sandbox/internal/kube"
)

// chartRepo serves a Helm repository on loopback holding one chart, demo 0.1.0, whose
// Deployment runs the image in its values and whose install hook runs another.
func chartRepo(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	dir := t.TempDir()
	c := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: "v2", Name: "demo", Version: "0.1.0"},
		Values:   map[string]any{"image": "registry.example/demo:1.0"},
		Templates: []*chart.File{
			{Name: "templates/deployment.yaml", Data: []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: demo, namespace: {{ .Release.Namespace }}}
spec:
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      initContainers: [{name: init, image: "registry.example/init:2.0"}]
      containers: [{name: demo, image: {{ .Values.image | quote }}}]
`)},
			{Name: "templates/hook.yaml", Data: []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: demo-hook
  annotations: {"helm.sh/hook": post-install}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: hook, image: "registry.example/hook:3.0"}]
`)},
		},
	}
	if _, err := chartutil.Save(c, dir); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	fileServer := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fileServer.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	idx, err := repo.IndexDirectory(dir, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, &hits
}

func TestFetchChartFromRepositoryOnceThenFromCache(t *testing.T) {
	srv, hits := chartRepo(t)
	cache := t.TempDir()
	c := UpstreamChart{Release: "demo", Namespace: "demo-ns", Chart: "demo", Repo: srv.URL, Version: "0.1.0",
		Values: func(Values) map[string]any { return map[string]any{"image": "registry.example/demo:1.1"} }}
	chrt, err := FetchChart(context.Background(), c, cache)
	if err != nil {
		t.Fatal(err)
	}
	if chrt.Metadata.Version != "0.1.0" {
		t.Fatalf("fetched %s", chrt.Metadata.Version)
	}
	if hits.Load() == 0 {
		t.Fatal("the repository was never asked")
	}
	missing := c
	missing.Version = "9.9.9"
	missing.Release = "demo-missing"
	if _, err := FetchChart(context.Background(), missing, t.TempDir()); err == nil || !strings.Contains(err.Error(), "9.9.9") {
		t.Fatalf("a version the repository lacks: %v", err)
	}
	srv.Close()
	if _, err := FetchChart(context.Background(), c, cache); err != nil {
		t.Fatalf("second fetch with the repository gone: %v (the download is not cached)", err)
	}

	objs, err := RenderChart(chrt, c.Release, c.Namespace, c.Values(Values{}))
	if err != nil {
		t.Fatal(err)
	}
	got := Images(objs)
	want := []string{"registry.example/demo:1.1", "registry.example/hook:3.0", "registry.example/init:2.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("images %v, want %v (the install values, init containers and hooks all count)", got, want)
	}

}

func TestNeverPull(t *testing.T) {
	in := `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: ns1, annotations: {"helm.sh/hook": post-install}}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      initContainers: [{name: i, image: "r/i:1", imagePullPolicy: Always}]
      containers: [{name: c, image: "r/c:1", imagePullPolicy: Always}, {name: e, image: "r/e:1"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: ns1}
data: {containers: "not a list"}
`
	out, err := neverPull{}.Run(bytes.NewBufferString(in))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("%d objects after post-rendering:\n%s", len(objs), out)
	}
	if objs[0].GetAnnotations()["helm.sh/hook"] != "post-install" {
		t.Error("hook annotation lost")
	}
	for _, path := range [][]string{{"initContainers"}, {"containers"}} {
		list, _, _ := unstructured.NestedSlice(objs[0].Object, append([]string{"spec", "template", "spec"}, path...)...)
		for _, c := range list {
			if p := c.(map[string]any)["imagePullPolicy"]; p != "IfNotPresent" {
				t.Errorf("%v: imagePullPolicy %v", path, p)
			}
		}
	}
	if v, _, _ := unstructured.NestedString(objs[1].Object, "data", "containers"); v != "not a list" {
		t.Errorf("a ConfigMap's data changed: %q", v)
	}
}
