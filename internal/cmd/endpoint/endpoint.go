// Package endpoint implements `sandbox endpoint`.
package endpoint

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// NewCmd returns `sandbox endpoint`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	namespace := models.DefaultNamespace
	cmd := &cobra.Command{
		Use:   "endpoint",
		Short: "Print the gateway base URL reachable from this machine",
		Long: `Print the base URL of the namespace's gateway on 127.0.0.1. The gateway speaks the
OpenAI API: append /v1/chat/completions, /v1/completions, ...`,
		Example: `  curl -s "$(sandbox endpoint)/v1/chat/completions" -H "Authorization: Bearer $(sandbox key)" \
    -H 'Content-Type: application/json' -d '{"model":"phi-4-mini","messages":[{"role":"user","content":"Hi"}]}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if namespace != models.DefaultNamespace {
				return fmt.Errorf("only the gateway of namespace %s is published on 127.0.0.1; reach %s-gw with kubectl port-forward", models.DefaultNamespace, namespace)
			}
			if err := cluster.Preflight(cmd.Context()); err != nil {
				return err
			}
			port, err := cluster.New(progress.Discard()).GatewayPort(cmd.Context(), f.Name)
			if err != nil {
				return fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", f.Name, err)
			}
			fmt.Fprintf(f.IOStreams.Out, "http://127.0.0.1:%d\n", port)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", namespace, "workload namespace of the gateway")
	return cmd
}
