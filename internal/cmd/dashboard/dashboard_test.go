package dashboard

import (
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/iostreams"
)

func TestRefusesBadFlagsAndPipes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--load-concurrency", "0"}, "--load-concurrency 0"},
		{[]string{"--load-duration", "3h"}, "--load-duration 3h0m0s"},
		{[]string{"--scrape-interval", "10ms"}, "--scrape-interval 10ms"},
		// Flags are fine, but stdout is a buffer, not a terminal.
		{nil, "needs a terminal"},
	} {
		ios, _, _, _ := iostreams.Test()
		cmd := NewCmd(&cmdutil.Factory{IOStreams: ios, Name: "none", Kubeconfig: "/nonexistent"})
		cmd.SetArgs(c.args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
