// Package apiservertest finds a real kube-apiserver and etcd for controller tests
// (controller-runtime's envtest), without downloading anything: the sandbox's node-image builder
// has already compiled both from the Kubernetes module.
package apiservertest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/nodeimage"
)

// BinaryDir returns a directory holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the
// newest Kubernetes version the node-image cache holds. It skips the test when there is none,
// since such a test cannot run, not fail, on a machine that never built a node image.
func BinaryDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	matches, _ := filepath.Glob(filepath.Join(nodeimage.DefaultCacheDir(), "bin", "*", "kube-apiserver"))
	slices.Sort(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		dir := filepath.Dir(matches[i])
		if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
			return dir
		}
	}
	t.Skip("no kube-apiserver/etcd: set KUBEBUILDER_ASSETS or run `sandbox node-image build` once")
	return ""
}
