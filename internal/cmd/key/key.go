// Package key implements `sandbox key`.
package key

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
)

// NewCmd returns `sandbox key`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	namespace := models.DefaultNamespace
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Print the namespace's API key",
		Long: `Print the API key of a workload namespace: the gateway accepts requests carrying
Authorization: Bearer <key>, and a key opens its own namespace only.`,
		Example: `  export OPENAI_API_KEY=$(sandbox key)
  sandbox key --namespace team-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := kube.New(f.KubeconfigPath())
			if err != nil {
				return fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", f.Name, err)
			}
			k, err := models.APIKey(cmd.Context(), c, namespace)
			if err != nil {
				return err
			}
			fmt.Fprintln(f.IOStreams.Out, k)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", namespace, "workload namespace")
	return cmd
}
