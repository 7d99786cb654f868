// Package pending registers the commands of the command-line contract that later work will
// implement, so scripts see the whole contract and a clear error instead of "unknown command".
package pending

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
)

// command is a contract entry not built yet.
type command struct{ use, short string }

var commands = []command{}

// NewCmds returns one command per pending entry; each exits 2 saying it is not implemented.
func NewCmds() []*cobra.Command {
	var out []*cobra.Command
	for _, c := range commands {
		c := c
		out = append(out, &cobra.Command{
			Use:                c.use,
			Short:              c.short + " (not implemented yet)",
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("`sandbox %s` is not implemented yet", c.use)}
			},
		})
	}
	return out
}
