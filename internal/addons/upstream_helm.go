package addons

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

// DefaultChartCache is where the upstream profile keeps downloaded charts and manifests.
func DefaultChartCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "sandbox", "upstream")
}

// FetchChart downloads the chart from its repository or OCI registry into cacheDir (reusing a
// previous download) and loads it.
func FetchChart(ctx context.Context, c UpstreamChart, cacheDir string) (*chart.Chart, error) {
	if cacheDir == "" {
		cacheDir = DefaultChartCache()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	// A downloaded chart is immutable for its version; only the first up fetches it.
	cached := filepath.Join(cacheDir, "charts", c.Release+"-"+c.Version+".tgz")
	if chrt, err := loader.Load(cached); err == nil {
		return chrt, nil
	}
	settings := cli.New()
	settings.RepositoryCache = filepath.Join(cacheDir, "repository")
	settings.RepositoryConfig = filepath.Join(cacheDir, "repositories.yaml")
	settings.RegistryConfig = filepath.Join(cacheDir, "registry.json")
	rc, err := registry.NewClient(registry.ClientOptCredentialsFile(settings.RegistryConfig))
	if err != nil {
		return nil, fmt.Errorf("helm registry client: %w", err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.SetRegistryClient(rc)
	install.ChartPathOptions.RepoURL = c.Repo
	install.ChartPathOptions.Version = c.Version
	type located struct {
		path string
		err  error
	}
	done := make(chan located, 1)
	// LocateChart takes no context; the caller's deadline still ends the wait.
	go func() {
		p, err := install.ChartPathOptions.LocateChart(c.Chart, settings)
		done <- located{p, err}
	}()
	var l located
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("fetching chart %s: %w", c.Ref(), ctx.Err())
	case l = <-done:
	}
	if l.err != nil {
		return nil, fmt.Errorf("fetching chart %s: %w", c.Ref(), l.err)
	}
	chrt, err := loader.Load(l.path)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", c.Ref(), err)
	}
	if data, err := os.ReadFile(l.path); err == nil && os.MkdirAll(filepath.Dir(cached), 0o755) == nil {
		_ = os.WriteFile(cached, data, 0o644) // a cache miss next time is the only cost
	}
	return chrt, nil
}

func installChart(ctx context.Context, env *Env, c UpstreamChart, chrt *chart.Chart) error {
	hc := &helm.Client{Kubeconfig: env.Values.Kubeconfig}
	if _, err := hc.Apply(ctx, c.Release, c.Namespace, chrt, c.Values(env.Values), chartTimeout); err != nil {
		return fmt.Errorf("%s: %w", c.Ref(), err)
	}
	return nil
}

// RenderChart renders a chart client-side the way the cluster would get it, hooks included
// (their images must be preloaded too), and decodes the objects.
func RenderChart(chrt *chart.Chart, release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.Replace = true
	install.IncludeCRDs = true
	install.KubeVersion = &chartutil.KubeVersion{Version: "v" + strings.TrimPrefix(versions.Kubernetes, "v"), Major: "1", Minor: "34"}
	rel, err := install.Run(chrt, values)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", chrt.Name(), err)
	}
	manifest := rel.Manifest
	for _, h := range rel.Hooks {
		manifest += "\n---\n" + h.Manifest
	}
	objs, err := kube.Decode([]byte(manifest))
	if err != nil {
		return nil, fmt.Errorf("decoding chart %s: %w", chrt.Name(), err)
	}
	return objs, nil
}

// Images lists the container images objs run, sorted and without duplicates.
func Images(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if (k == "containers" || k == "initContainers" || k == "ephemeralContainers") && c != nil {
					if list, ok := c.([]any); ok {
						for _, item := range list {
							if m, ok := item.(map[string]any); ok {
								if img, ok := m["image"].(string); ok && img != "" {
									seen[img] = true
								}
							}
						}
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	for _, o := range objs {
		walk(o.Object)
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	slices.Sort(out)
	return out
}

// UpstreamImages fetches and renders every upstream chart with the catalogue's values and
// returns every image the profile runs: the charts' images, the pinned ones (the picker, the
// simulator, the Istio gateway proxy that istiod injects at run time) and the mocker's.
func UpstreamImages(ctx context.Context, v Values) ([]string, error) {
	var objs []*unstructured.Unstructured
	for _, c := range UpstreamCharts() {
		chrt, err := FetchChart(ctx, c, v.ChartCache)
		if err != nil {
			return nil, err
		}
		o, err := RenderChart(chrt, c.Release, c.Namespace, c.Values(v))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	nf, err := RenderUpstream("notfound", v)
	if err != nil {
		return nil, err
	}
	objs = append(objs, nf...)
	images := Images(objs)
	for _, img := range versions.UpstreamImages() {
		if !slices.Contains(images, img) {
			images = append(images, img)
		}
	}
	slices.Sort(images)
	return images, nil
}
