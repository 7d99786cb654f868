// Package addons installs the components of a sandbox in dependency order, each one a step
// that applies its objects idempotently (server-side apply) and then waits until it is ready.
// The catalogue of a profile is data: an ordered list of Addons.
package addons

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// Values parameterise the manifests of a catalogue.
type Values struct {
	// SystemNamespace holds the sandbox's own cluster-wide components.
	SystemNamespace string
	// StackdImage is the offline component image loaded into the nodes.
	StackdImage string
	// GPUsPerNode is the fake nvidia.com/gpu capacity of each worker.
	GPUsPerNode int
	// KEDAImage is the locally built KEDA operator + metrics adapter image.
	KEDAImage string
	// ScalerTiming is the scaling preset: "fast" (demo scales in seconds) or "upstream".
	ScalerTiming string
	// Upstream profile only: the kind cluster's name, its kubeconfig (for Helm) and where
	// downloaded charts and manifests are cached.
	ClusterName, Kubeconfig, ChartCache string
}

// Env is what an addon needs to install itself.
type Env struct {
	Client *kube.Client
	Status *progress.Status
	Values Values
}

// Addon is one installable component.
type Addon struct {
	Name string
	// Install applies the addon's objects; it must be safe to run again.
	Install func(ctx context.Context, env *Env) error
	// Ready blocks until the addon works, or fails saying what is not ready.
	Ready func(ctx context.Context, env *Env) error
}

// InstallAll installs addons in order, one progress step each.
func InstallAll(ctx context.Context, env *Env, list []Addon) error {
	for _, a := range list {
		step := env.Status.Start("Installing %s", a.Name)
		err := a.Install(ctx, env)
		if err == nil && a.Ready != nil {
			err = a.Ready(ctx, env)
		}
		if err := step.End(err); err != nil {
			return fmt.Errorf("installing %s: %w", a.Name, err)
		}
	}
	return nil
}

// Render executes a manifest template from fsys with the values.
func Render(fsys fs.FS, name string, v Values) ([]byte, error) {
	return kube.RenderTemplate(fsys, name, v)
}

// applyTemplate renders and applies a manifest template.
func applyTemplate(fsys fs.FS, name string) func(context.Context, *Env) error {
	return func(ctx context.Context, env *Env) error {
		objs, err := kube.RenderObjects(fsys, name, env.Values)
		if err != nil {
			return err
		}
		return env.Client.Apply(ctx, objs)
	}
}
