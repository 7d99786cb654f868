package lifecycle

import (
	"context"
	"strings"
	"testing"
)

func validOptions() Options {
	return Options{Name: "sandbox", Profile: ProfileOffline, Workers: 2, GPUsPerNode: 4, Models: "default", Kubeconfig: "/tmp/kc"}
}

func TestValidate(t *testing.T) {
	if err := (&Options{}).Validate(); err == nil {
		t.Fatal("empty options accepted")
	}
	for _, p := range []string{ProfileOffline, ProfileUpstream, ""} {
		good := validOptions()
		good.Profile = p
		if err := good.Validate(); err != nil {
			t.Fatalf("profile %q: %v", p, err)
		}
	}
	for _, tc := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.Name = "Bad_Name" }, "--name"},
		{func(o *Options) { o.Name = strings.Repeat("a", 41) }, "--name"},
		{func(o *Options) { o.Profile = "cloud" }, "--profile"},
		{func(o *Options) { o.Workers = 0 }, "--workers"},
		{func(o *Options) { o.Workers = 9 }, "--workers"},
		{func(o *Options) { o.GPUsPerNode = 0 }, "--gpus-per-node"},
		{func(o *Options) { o.Models = "all" }, "--models"},
		{func(o *Options) { o.GatewayPort = 70000 }, "--gateway-port"},
	} {
		o := validOptions()
		tc.mutate(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want mention of %q", o, err, tc.want)
		}
	}
}

// Bad input must change nothing: Up validates before it touches Docker or the firewall.
func TestUpRejectsBadInputBeforeDoingAnything(t *testing.T) {
	o := validOptions()
	o.Workers = -1
	if _, err := Up(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--workers") {
		t.Fatalf("Up with bad input: %v", err)
	}
}
