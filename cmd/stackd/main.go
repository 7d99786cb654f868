// Command stackd is the multi-call binary of the offline profile's in-cluster components.
// One static binary in one FROM-scratch image keeps the offline image small and lets every
// component be started as `stackd <component> [flags]` from a Deployment's args.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/components/authz"
	"github.com/inference-sandbox/sandbox/internal/components/bbr"
	"github.com/inference-sandbox/sandbox/internal/components/epp"
	"github.com/inference-sandbox/sandbox/internal/components/gateway"
	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/components/notfound"
	"github.com/inference-sandbox/sandbox/internal/components/scaler"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

func main() {
	root := &cobra.Command{
		Use:           "stackd",
		Short:         "In-cluster components of the sandbox's offline profile",
		Long:          "stackd runs one component of the offline inference stack per process: stackd <component> [flags].",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versions.Sandbox,
	}
	// Each component package exports NewCommand; add new components here, one line each.
	root.AddCommand(
		mocker.NewCommand(),
		authz.NewCommand(),
		bbr.NewCommand(),
		epp.NewCommand(),
		notfound.NewCommand(),
		sim.NewCommand(),
		gateway.NewCommand(),
		scaler.NewCommand(),
		inferenceset.NewCommand(),
	)
	// One place turns SIGINT/SIGTERM (a pod being stopped) into cancelling the command's
	// context; every component drains from cmd.Context().
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackd:", err)
		os.Exit(1)
	}
}
