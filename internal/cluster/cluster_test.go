package cluster

import (
	"net"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func TestKindConfigPublishesOnLoopbackOnly(t *testing.T) {
	cfg := KindConfig(Spec{Name: "x", Workers: 3}, 30080)
	if cfg.Networking.APIServerAddress != "127.0.0.1" {
		t.Errorf("API server on %q", cfg.Networking.APIServerAddress)
	}
	if len(cfg.Nodes) != 4 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole {
		t.Fatalf("nodes %+v", cfg.Nodes)
	}
	pm := cfg.Nodes[0].ExtraPortMappings
	if len(pm) != 1 || pm[0].ListenAddress != "127.0.0.1" || pm[0].ContainerPort != GatewayNodePort || pm[0].HostPort != 30080 {
		t.Fatalf("port mappings %+v", pm)
	}
	for _, n := range cfg.Nodes[1:] {
		if n.Role != v1alpha4.WorkerRole || n.Labels[WorkerLabel] != "true" || len(n.ExtraPortMappings) != 0 {
			t.Errorf("worker %+v", n)
		}
	}
}

func TestFreePortFallsBackWhenTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := l.Addr().(*net.TCPAddr).Port
	if p := freePort(taken); p == taken || p <= 0 {
		t.Fatalf("freePort(%d) = %d while it is taken", taken, p)
	}
	l.Close()
	if p := freePort(taken); p != taken {
		t.Fatalf("freePort(%d) = %d although it is free again", taken, p)
	}
}
