//go:build e2e

package e2e

// This file's name sorts last, so `go test` runs TestDown after every other test of the
// package: it destroys the shared sandbox.

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/inference-sandbox/sandbox/internal/lifecycle"
)

func TestDown(t *testing.T) {
	down := features.New("down").
		WithLabel("tier", "pr").WithLabel("area", "lifecycle").
		Assess("down leaves no container, network or kubeconfig behind", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if os.Getenv("E2E_KEEP") != "" {
				t.Skip("E2E_KEEP set: keeping the sandbox")
			}
			if err := lifecycle.Down(ctx, sb.downOptions()); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster="+sb.Name).Output()
			if err != nil {
				t.Fatal(err)
			}
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				t.Errorf("node containers left: %v", ids)
			}
			if _, err := os.Stat(sb.Kubeconfig); !os.IsNotExist(err) {
				t.Errorf("kubeconfig %s left (%v)", sb.Kubeconfig, err)
			}
			if _, err := os.Stat(sb.StateDir); !os.IsNotExist(err) {
				t.Errorf("state directory %s left (%v)", sb.StateDir, err)
			}
			// The kind network is shared by every kind cluster: it must be gone only if no
			// other kind cluster is left on this machine.
			others, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster").Output()
			if len(strings.Fields(string(others))) == 0 {
				if exec.CommandContext(ctx, "docker", "network", "inspect", "kind").Run() == nil {
					t.Error("docker network kind left although no kind cluster remains")
				}
			}
			// Down twice is not an error.
			if err := lifecycle.Down(ctx, sb.downOptions()); err != nil {
				t.Fatalf("second down: %v", err)
			}
			return ctx
		}).Feature()
	testenv.Test(t, down)
}
