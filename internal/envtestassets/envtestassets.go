// Package envtestassets finds a kube-apiserver and etcd for controller tests that run
// against a real API server (controller-runtime's envtest), without downloading anything:
// $KUBEBUILDER_ASSETS when set, else the binaries the offline node-image builder compiled
// from the Kubernetes module.
package envtestassets

import (
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/inference-sandbox/sandbox/internal/nodeimage"
)

// ErrMissing means no binaries were found; tests skip on it.
var ErrMissing = errors.New("no kube-apiserver/etcd: set KUBEBUILDER_ASSETS or run `sandbox node-image build` once")

// Dir returns the directory holding kube-apiserver and etcd, newest Kubernetes first.
func Dir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	matches, _ := filepath.Glob(filepath.Join(nodeimage.DefaultCacheDir(), "bin", "*", "kube-apiserver"))
	slices.Sort(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		dir := filepath.Dir(matches[i])
		if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
			return dir, nil
		}
	}
	return "", ErrMissing
}
