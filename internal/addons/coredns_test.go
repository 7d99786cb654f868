package addons

import (
	"strings"
	"testing"
)

// kubeadm v1.34's default Corefile.
const kubeadmCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
`

func TestStripUpstream(t *testing.T) {
	got := StripUpstream(kubeadmCorefile)
	for _, gone := range []string{"forward", "max_concurrent", "loop"} {
		if strings.Contains(got, gone) {
			t.Errorf("%q still in:\n%s", gone, got)
		}
	}
	for _, kept := range []string{"kubernetes cluster.local", "pods insecure", "cache 30", "disable denial", "reload", "loadbalance", "lameduck"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%q lost:\n%s", kept, got)
		}
	}
	if strings.Count(got, "{") != strings.Count(got, "}") {
		t.Errorf("unbalanced braces:\n%s", got)
	}
	if StripUpstream(got) != got {
		t.Error("not idempotent")
	}
}

func TestStripUpstreamOneLineForward(t *testing.T) {
	in := ".:53 {\n    forward . 8.8.8.8\n    kubernetes cluster.local\n}\nexample.org:53 {\n    forward . 1.1.1.1 { policy sequential }\n    log\n}\n"
	got := StripUpstream(in)
	if strings.Contains(got, "forward") || !strings.Contains(got, "kubernetes cluster.local") || !strings.Contains(got, "log") {
		t.Fatalf("got:\n%s", got)
	}
}
