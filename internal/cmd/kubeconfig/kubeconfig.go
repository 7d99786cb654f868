// Package kubeconfig implements `sandbox kubeconfig`.
package kubeconfig

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
)

// NewCmd returns `sandbox kubeconfig`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the path of the sandbox cluster's kubeconfig",
		Example: `  export KUBECONFIG=$(sandbox kubeconfig)
  kubectl --kubeconfig "$(sandbox kubeconfig --name big)" get nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := f.KubeconfigPath()
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("sandbox %q has no kubeconfig at %s; run `sandbox up --name %s` first", f.Name, path, f.Name)
			}
			fmt.Fprintln(f.IOStreams.Out, path)
			return nil
		},
	}
}
