package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/egress"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// DownOptions of `down`.
type DownOptions struct {
	Name       string
	Kubeconfig string
	// StateDir is removed when it holds nothing else.
	StateDir string
	Status   *progress.Status
}

// Down deletes the cluster and everything the sandbox made for it: node containers,
// kubeconfig, state directory, the kind network when unused, and the egress guard when no
// kind cluster is left to guard. Images stay: they are caches, not state.
func Down(ctx context.Context, o DownOptions) error {
	if o.Status == nil {
		o.Status = progress.Discard()
	}
	if err := cluster.Preflight(ctx); err != nil {
		return err
	}
	mgr := cluster.New(o.Status)
	step := o.Status.Start("Deleting cluster %q", o.Name)
	if err := step.End(mgr.Delete(ctx, o.Name, o.Kubeconfig)); err != nil {
		return err
	}
	if o.StateDir != "" {
		// The state directory is the sandbox's own (kubeconfig, logs of failed creations).
		if err := os.RemoveAll(o.StateDir); err != nil {
			return fmt.Errorf("removing %s: %w", o.StateDir, err)
		}
	}
	remaining, err := mgr.List()
	if err != nil {
		return err
	}
	if len(remaining) > 0 {
		return nil
	}
	lock, err := egress.TryExclusive()
	if errors.Is(err, egress.ErrBusy) {
		o.Status.Infof("kept the egress guard: another sandbox is being created")
		return nil
	}
	if err != nil {
		return fmt.Errorf("egress guard lock: %w", err)
	}
	defer lock.Release()
	// Re-check under the lock: a sandbox created meanwhile has finished creating its nodes.
	if remaining, err = mgr.List(); err != nil || len(remaining) > 0 {
		return err
	}
	step = o.Status.Start("Removing the egress guard (no kind cluster left)")
	if err := step.End(egress.New().Remove(ctx)); err != nil {
		return fmt.Errorf("removing the egress guard: %w", err)
	}
	return nil
}
