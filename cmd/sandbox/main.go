// Command sandbox brings up and shows a production LLM-inference stack on a local kind cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/inference-sandbox/sandbox/internal/cmd/root"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := cmdutil.New()
	cmd := root.NewCmd(f)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *cmdutil.ExitError
	if !errors.Is(err, cmdutil.ErrSilent) {
		fmt.Fprintln(f.IOStreams.ErrOut, "error:", err)
	}
	if errors.As(err, &exit) {
		return exit.Code
	}
	return 1
}
