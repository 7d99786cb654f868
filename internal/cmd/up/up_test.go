package up

import (
	"testing"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/iostreams"
	"github.com/inference-sandbox/sandbox/internal/lifecycle"
)

func TestFlagsReachOptions(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: "big"}
	var got *lifecycle.Options
	cmd := NewCmd(f, func(o *lifecycle.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--workers", "3", "--gpus-per-node", "8", "--models", "none", "--gateway-port", "31000"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Name != "big" || got.Workers != 3 || got.GPUsPerNode != 8 || got.Models != "none" || got.GatewayPort != 31000 || got.Profile != "" {
		t.Fatalf("options %+v", got)
	}
	if got.Kubeconfig != f.KubeconfigPath() {
		t.Fatalf("kubeconfig %q, want the sandbox's own %q", got.Kubeconfig, f.KubeconfigPath())
	}
}

func TestDefaults(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: cmdutil.DefaultName}
	var got *lifecycle.Options
	cmd := NewCmd(f, func(o *lifecycle.Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Workers != 2 || got.GPUsPerNode != 4 || got.Models != "default" {
		t.Fatalf("defaults %+v; the command-line contract says 2 workers, 4 GPUs, default models", got)
	}
}

// Without --profile the choice is left to `up` (a quick registry probe); an explicit flag wins.
func TestProfileFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--profile", "offline"}, lifecycle.ProfileOffline},
		{[]string{"--profile", "upstream"}, lifecycle.ProfileUpstream},
	} {
		ios, _, _, _ := iostreams.Test()
		f := &cmdutil.Factory{IOStreams: ios, Name: cmdutil.DefaultName}
		var got *lifecycle.Options
		cmd := NewCmd(f, func(o *lifecycle.Options) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if got.Profile != tc.want {
			t.Errorf("%v: profile %q, want %q", tc.args, got.Profile, tc.want)
		}
	}
}
