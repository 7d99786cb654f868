package addons

import (
	"bytes"
	"context"
	"errors"
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
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

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

// InstallChart is `helm upgrade --install --wait` with one change to what the chart renders:
// no container may pull on its own (see neverPull).
func InstallChart(ctx context.Context, env *Env, c UpstreamChart, chrt *chart.Chart) error {
	values := c.Values(env.Values)
	if err := helm.ValidateValues(chrt, values); err != nil {
		return fmt.Errorf("%s: %w", c.Ref(), err)
	}
	settings := cli.New()
	settings.KubeConfig = env.Values.Kubeconfig
	settings.SetNamespace(c.Namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), c.Namespace, "secret", func(string, ...any) {}); err != nil {
		return fmt.Errorf("%s: helm: %w", c.Ref(), err)
	}
	hist := action.NewHistory(cfg)
	hist.Max = 1
	if _, err := hist.Run(c.Release); errors.Is(err, driver.ErrReleaseNotFound) {
		install := action.NewInstall(cfg)
		install.ReleaseName, install.Namespace, install.CreateNamespace = c.Release, c.Namespace, true
		install.Wait, install.Timeout = true, chartTimeout
		install.PostRenderer = neverPull{}
		if _, err := install.RunWithContext(ctx, chrt, values); err != nil {
			return fmt.Errorf("installing %s as %s/%s: %w", c.Ref(), c.Namespace, c.Release, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("reading release %s/%s: %w", c.Namespace, c.Release, err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Wait, upgrade.Timeout, upgrade.MaxHistory = c.Namespace, true, chartTimeout, 5
	upgrade.PostRenderer = neverPull{}
	if _, err := upgrade.RunWithContext(ctx, c.Release, chrt, values); err != nil {
		return fmt.Errorf("upgrading %s/%s to %s: %w", c.Namespace, c.Release, c.Ref(), err)
	}
	return nil
}

// neverPull sets imagePullPolicy IfNotPresent on every container a chart renders. Every image
// is pulled on the host and loaded into the nodes before the install, and with the egress
// guard on a node cannot reach a registry: a chart default of Always would make the kubelet
// ask the registry anyway and fail with ErrImagePull although the image is there.
type neverPull struct{}

func (neverPull) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	objs, err := kube.Decode(rendered.Bytes())
	if err != nil {
		return nil, fmt.Errorf("reading the rendered chart: %w", err)
	}
	var out bytes.Buffer
	for _, o := range objs {
		setPullPolicy(o.Object)
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(data)
	}
	return &out, nil
}

func setPullPolicy(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if k == "containers" || k == "initContainers" || k == "ephemeralContainers" {
				if list, ok := c.([]any); ok {
					for _, item := range list {
						if m, ok := item.(map[string]any); ok {
							if _, ok := m["image"]; ok {
								m["imagePullPolicy"] = "IfNotPresent"
							}
						}
					}
				}
			}
			setPullPolicy(c)
		}
	case []any:
		for _, c := range t {
			setPullPolicy(c)
		}
	}
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
