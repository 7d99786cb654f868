// Package apiservertest runs a real kube-apiserver and etcd for controller tests
// (controller-runtime's envtest) without downloading anything, since the sandbox's node-image
// builder has already compiled both from the Kubernetes module, and installs the offline
// manifests into it.
package apiservertest

import (
	"context"
	"os"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/envtestassets"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

// RequireEnv, when set, turns a missing kube-apiserver/etcd into a failure. `make test` sets it,
// since it builds the node image (and with it both binaries) first: there a skip would hide
// every real-API-server test.
const RequireEnv = "SANDBOX_REQUIRE_APISERVER"

// BinaryDir returns a directory holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the
// newest Kubernetes version the node-image cache holds. It skips the test when there is none,
// since such a test cannot run, not fail, on a machine that never built a node image, unless
// RequireEnv is set.
func BinaryDir(t testing.TB) string {
	t.Helper()
	dir, err := envtestassets.Dir()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%v (%s is set, so this test must run)", err, RequireEnv)
		}
		t.Skip(err.Error())
	}
	return dir
}

// Start runs kube-apiserver and etcd with the given CRDs installed until the test ends, and
// returns an admin client configuration.
func Start(t testing.TB, crds []*apiextensionsv1.CustomResourceDefinition) *rest.Config {
	t.Helper()
	env := &envtest.Environment{BinaryAssetsDirectory: BinaryDir(t), CRDInstallOptions: envtest.CRDInstallOptions{CRDs: crds}}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return cfg
}

// ApplyOffline renders one of the offline profile's manifests (manifests/offline) with the given
// values and applies it as `sandbox up` does.
func ApplyOffline(t testing.TB, cfg *rest.Config, name string, v addons.Values) {
	t.Helper()
	kc, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := addons.Render(manifests.Offline, name, v)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Apply(context.Background(), objs); err != nil {
		t.Fatalf("applying manifests/offline/%s: %v", name, err)
	}
}

// As returns cfg acting as user (e.g. "system:serviceaccount:ns:name"), so that a test runs
// with exactly the RBAC that user is granted.
func As(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user}
	return c
}
