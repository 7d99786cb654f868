// Package version implements `sandbox version`.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

// NewCmd returns `sandbox version`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the sandbox version and every pinned component version",
		Example: "  sandbox version\n  sandbox version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "json":
				enc := json.NewEncoder(f.IOStreams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"sandbox": versions.Sandbox, "go": runtime.Version(), "pins": versions.Table})
			case "", "table":
				fmt.Fprintf(f.IOStreams.Out, "sandbox %s (%s)\n\n", versions.Sandbox, runtime.Version())
				tw := tabwriter.NewWriter(f.IOStreams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "COMPONENT\tVERSION\tSOURCE\tCHECKED")
				for _, p := range versions.Table {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Source, p.Checked)
				}
				return tw.Flush()
			default:
				return fmt.Errorf("-o %q: must be json or table", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table (default) or json")
	return cmd
}
