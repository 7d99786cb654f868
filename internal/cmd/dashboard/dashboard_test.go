package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
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

// TestLoaderDrivesTheStack runs the l key's engine against the real data path on loopback: it
// reports progress while requests complete and stops when its context is cancelled.
func TestLoaderDrivesTheStack(t *testing.T) {
	stack := stacktest.Start(t, stacktest.Options{Sims: 2}, "phi-4-mini")
	l := &loader{url: stack.URL, concurrency: 4, duration: time.Minute,
		key: func(context.Context, string) (string, error) { return stacktest.Key, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Start(ctx, stacktest.Namespace, "phi-4-mini")
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case u, ok := <-ch:
			if !ok {
				t.Fatal("the run ended by itself")
			}
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			done = u.Done >= 10 && u.Errors == 0
		case <-deadline:
			t.Fatal("no progress with 10 requests done")
		}
	}
	cancel()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatal("cancelling did not end the run")
		}
	}
}

func TestLoaderOnlyLoadsThePublishedNamespace(t *testing.T) {
	l := &loader{url: "http://127.0.0.1:1", concurrency: 1, duration: time.Second,
		key: func(context.Context, string) (string, error) { return "k", nil }}
	u := <-l.Start(context.Background(), "team-a", "m")
	if u.Err == nil || !strings.Contains(u.Err.Error(), "only namespace models") {
		t.Fatalf("load in another namespace: %v", u.Err)
	}
}
