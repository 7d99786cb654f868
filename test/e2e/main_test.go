//go:build e2e

// Package e2e is the sandbox's contract, run against one real sandbox that TestMain brings up
// with the sandbox's own `up` code and that every feature shares. Features carry labels
// (tier=pr|nightly, area=...); run them with `make e2e` or
//
//	go test -tags e2e ./test/e2e -args --labels tier=pr
//
// Environment: E2E_NAME (sandbox name, default sandbox-e2e), E2E_PROFILE (offline, the
// default, or upstream), SANDBOX_STACKD and SANDBOX_BIN (binaries, default ../../bin/...),
// E2E_KEEP=1 keeps the sandbox afterwards.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/lifecycle"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

var (
	testenv env.Environment
	sb      suite
)

// suite describes the sandbox under test.
type suite struct {
	Name        string
	Workers     int
	GPUsPerNode int
	Kubeconfig  string
	StateDir    string
	Stackd      string
	SandboxBin  string
	Up          *lifecycle.Result
}

func (s suite) upOptions() lifecycle.Options {
	return lifecycle.Options{
		Name: s.Name, Profile: envOr("E2E_PROFILE", lifecycle.ProfileOffline), Workers: s.Workers, GPUsPerNode: s.GPUsPerNode,
		Models: "default", Kubeconfig: s.Kubeconfig, Stackd: s.Stackd, Status: progress.New(os.Stderr),
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e flags:", err)
		os.Exit(2)
	}
	repo, _ := filepath.Abs("../..")
	sb = suite{
		Name:        envOr("E2E_NAME", "sandbox-e2e"),
		Workers:     2,
		GPUsPerNode: 4,
		Stackd:      envOr("SANDBOX_STACKD", filepath.Join(repo, "bin", "stackd")),
		SandboxBin:  envOr("SANDBOX_BIN", filepath.Join(repo, "bin", "sandbox")),
	}
	sb.StateDir = cmdutil.StateDir(sb.Name)
	sb.Kubeconfig = filepath.Join(sb.StateDir, "kubeconfig")

	testenv = env.NewWithConfig(cfg)
	testenv.Setup(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if cfg.DryRunMode() {
			return ctx, nil
		}
		res, err := lifecycle.Up(ctx, sb.upOptions())
		if err != nil {
			return ctx, fmt.Errorf("sandbox up: %w", err)
		}
		sb.Up = res
		cfg.WithKubeconfigFile(sb.Kubeconfig)
		return ctx, nil
	})
	// TestDown normally deletes the sandbox and checks nothing is left; this is the safety
	// net when it did not run (failed earlier, or filtered out).
	testenv.Finish(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if cfg.DryRunMode() || os.Getenv("E2E_KEEP") != "" {
			return ctx, nil
		}
		return ctx, lifecycle.Down(ctx, sb.downOptions())
	})
	os.Exit(testenv.Run(m))
}

func (s suite) downOptions() lifecycle.DownOptions {
	return lifecycle.DownOptions{Name: s.Name, Kubeconfig: s.Kubeconfig, StateDir: s.StateDir, Status: progress.New(os.Stderr)}
}
