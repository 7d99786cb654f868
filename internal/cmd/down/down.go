// Package down implements `sandbox down`.
package down

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/lifecycle"
)

// NewCmd returns `sandbox down`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Delete the sandbox cluster and everything sandbox made for it",
		Long: `Delete the sandbox's kind cluster, its kubeconfig and state directory, the kind Docker
network when no other cluster uses it, and the egress guard when no kind cluster is left.
The node and component images are kept as caches (remove them with docker rmi).
Deleting a sandbox that does not exist succeeds.`,
		Example: `  sudo sandbox down
  sudo sandbox down --name big`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := lifecycle.Down(cmd.Context(), lifecycle.DownOptions{
				Name:       f.Name,
				Kubeconfig: f.KubeconfigPath(),
				StateDir:   cmdutil.StateDir(f.Name),
				Status:     f.Status(),
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(f.IOStreams.Out, "Sandbox %q is down.\n", f.Name)
			return nil
		},
	}
}
