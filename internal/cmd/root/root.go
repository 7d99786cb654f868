// Package root assembles the `sandbox` command tree.
package root

import (
	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmd/chat"
	"github.com/inference-sandbox/sandbox/internal/cmd/dashboard"
	"github.com/inference-sandbox/sandbox/internal/cmd/down"
	"github.com/inference-sandbox/sandbox/internal/cmd/endpoint"
	"github.com/inference-sandbox/sandbox/internal/cmd/key"
	"github.com/inference-sandbox/sandbox/internal/cmd/kubeconfig"
	"github.com/inference-sandbox/sandbox/internal/cmd/load"
	"github.com/inference-sandbox/sandbox/internal/cmd/model"
	"github.com/inference-sandbox/sandbox/internal/cmd/nodeimage"
	"github.com/inference-sandbox/sandbox/internal/cmd/pending"
	"github.com/inference-sandbox/sandbox/internal/cmd/status"
	"github.com/inference-sandbox/sandbox/internal/cmd/up"
	"github.com/inference-sandbox/sandbox/internal/cmd/version"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

// NewCmd returns the root command; f's fields are bound to the global flags.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox <command>",
		Short: "A production LLM-inference stack on one machine",
		Long: `sandbox brings up, on a kind cluster on this machine, a production LLM-inference stack:
an API-key gateway, a body-based router, a KV-cache-aware endpoint picker, simulator-backed
model pods on fake GPU nodes and metric-driven autoscaling, and shows where every request
went and how many replicas each model runs.`,
		Example: `  sandbox up                 # create the cluster and install the stack
  sandbox status             # what is ready, and why not
  sandbox down               # remove everything`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versions.Sandbox,
	}
	cmd.SetOut(f.IOStreams.Out)
	cmd.SetErr(f.IOStreams.ErrOut)
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.Name, "name", cmdutil.DefaultName, "name of the sandbox (and of its kind cluster)")
	pf.StringVar(&f.Kubeconfig, "kubeconfig", "", "use this kubeconfig instead of the sandbox's own")

	cmd.AddCommand(
		up.NewCmd(f, nil),
		down.NewCmd(f),
		status.NewCmd(f),
		dashboard.NewCmd(f),
		kubeconfig.NewCmd(f),
		endpoint.NewCmd(f),
		key.NewCmd(f),
		model.NewCmd(f),
		load.NewCmd(f, nil),
		chat.NewCmd(f),
		nodeimage.NewCmd(f),
		version.NewCmd(f),
	)
	cmd.AddCommand(pending.NewCmds()...)
	return cmd
}
