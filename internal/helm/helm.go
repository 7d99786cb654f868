// Package helm installs the sandbox's embedded charts with the Helm v3 SDK: one function for
// "upgrade --install" (the SDK has none), uninstall, rendering for tests, and loading a chart
// from an embedded file system.
package helm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
)

// LoadChart reads a chart directory from an embedded file system.
func LoadChart(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, dir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", path.Base(dir), err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", path.Base(dir), err)
	}
	return c, nil
}

// ValidateValues checks values against the chart's values.schema.json before anything is
// sent to a cluster, so bad input changes nothing.
func ValidateValues(c *chart.Chart, values map[string]any) error {
	merged, err := chartutil.CoalesceValues(c, values)
	if err != nil {
		return err
	}
	if err := chartutil.ValidateAgainstSchema(c, merged); err != nil {
		return fmt.Errorf("invalid values for chart %s: %w", c.Name(), err)
	}
	return nil
}

// Client talks to one cluster.
type Client struct {
	Kubeconfig string
	// Log receives Helm's debug lines; nil discards them.
	Log func(format string, args ...any)
}

func (c *Client) config(namespace string) (*action.Configuration, error) {
	settings := cli.New()
	settings.KubeConfig = c.Kubeconfig
	settings.SetNamespace(namespace)
	cfg := new(action.Configuration)
	logf := c.Log
	if logf == nil {
		// The kube client's waiter calls the log function unconditionally.
		logf = func(string, ...any) {}
	}
	if err := cfg.Init(settings.RESTClientGetter(), namespace, "secret", logf); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, nil
}

// Apply installs the release, or upgrades it if it exists, waiting up to timeout for its
// resources. It is the SDK equivalent of `helm upgrade --install --wait`.
func (c *Client) Apply(ctx context.Context, name, namespace string, chrt *chart.Chart, values map[string]any, timeout time.Duration) (*release.Release, error) {
	if err := ValidateValues(chrt, values); err != nil {
		return nil, err
	}
	cfg, err := c.config(namespace)
	if err != nil {
		return nil, err
	}
	hist := action.NewHistory(cfg)
	hist.Max = 1
	if _, err := hist.Run(name); errors.Is(err, driver.ErrReleaseNotFound) {
		install := action.NewInstall(cfg)
		install.ReleaseName = name
		install.Namespace = namespace
		install.CreateNamespace = true
		install.Wait = timeout > 0
		install.Timeout = timeout
		rel, err := install.RunWithContext(ctx, chrt, values)
		if err != nil {
			return nil, fmt.Errorf("installing release %s/%s: %w", namespace, name, err)
		}
		return rel, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading release %s/%s: %w", namespace, name, err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = namespace
	upgrade.Wait = timeout > 0
	upgrade.Timeout = timeout
	upgrade.MaxHistory = 5
	rel, err := upgrade.RunWithContext(ctx, name, chrt, values)
	if err != nil {
		return nil, fmt.Errorf("upgrading release %s/%s: %w", namespace, name, err)
	}
	return rel, nil
}

// Uninstall removes a release; a missing release is not an error.
func (c *Client) Uninstall(name, namespace string, timeout time.Duration) error {
	cfg, err := c.config(namespace)
	if err != nil {
		return err
	}
	u := action.NewUninstall(cfg)
	u.Wait = timeout > 0
	u.Timeout = timeout
	if _, err := u.Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("uninstalling release %s/%s: %w", namespace, name, err)
	}
	return nil
}

// Get returns the deployed release, or nil when there is none.
func (c *Client) Get(name, namespace string) (*release.Release, error) {
	cfg, err := c.config(namespace)
	if err != nil {
		return nil, err
	}
	rel, err := action.NewGet(cfg).Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	return rel, err
}

// Render renders a chart client-side, for tests and dry runs.
func Render(chrt *chart.Chart, name, namespace string, values map[string]any) (string, error) {
	if err := ValidateValues(chrt, values); err != nil {
		return "", err
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.ReleaseName = name
	install.Namespace = namespace
	install.Replace = true
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.4", Major: "1", Minor: "34"}
	rel, err := install.Run(chrt, values)
	if err != nil {
		return "", fmt.Errorf("rendering chart %s: %w", chrt.Name(), err)
	}
	return rel.Manifest, nil
}
