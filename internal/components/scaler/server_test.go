package scaler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"

	pb "github.com/inference-sandbox/sandbox/internal/components/scaler/externalscaler"
)

// mapSource is a Source over fixed data: the cluster side is covered by the envtest test.
type mapSource struct {
	ready     map[types.NamespacedName]bool
	endpoints map[types.NamespacedName][]Endpoint
}

func (m *mapSource) Ready(_ context.Context, set types.NamespacedName) (bool, error) {
	r, ok := m.ready[set]
	if !ok {
		return false, fmt.Errorf("%s: %w", set, ErrNotFound)
	}
	return r, nil
}

func (m *mapSource) Endpoints(_ context.Context, set types.NamespacedName) ([]Endpoint, error) {
	if _, ok := m.ready[set]; !ok {
		return nil, fmt.Errorf("%s: %w", set, ErrNotFound)
	}
	return m.endpoints[set], nil
}

// startScaler serves the external scaler with mutual TLS on loopback and returns its address
// and the two Secrets' data.
func startScaler(t *testing.T, src Source) (addr string, server, client map[string][]byte) {
	t.Helper()
	server, client, err := IssueCertificates("keda")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := ServerTLSConfig(server)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeScaler(ctx, ln, tlsCfg, &Server{Source: src, Scraper: NewScraper()}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), server, client
}

// dial connects as KEDA does: trusting the CA, presenting a client certificate, and checking
// the server's name against the Service name it dials (here mapped to the loopback address).
func dial(t *testing.T, addr string, caPEM []byte, clientCert *tls.Certificate) pb.ExternalScalerClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: ServiceName + ".keda.svc.cluster.local", MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewExternalScalerClient(conn)
}

func TestExternalScalerOverMutualTLS(t *testing.T) {
	a, b := startSim(t), startSim(t)
	queue(t, a, 8) // 7 waiting
	queue(t, b, 5) // 4 waiting
	set := types.NamespacedName{Namespace: "models", Name: "phi-4-mini"}
	idle := types.NamespacedName{Namespace: "models", Name: "idle"}
	src := &mapSource{
		ready: map[types.NamespacedName]bool{set: true, idle: false},
		endpoints: map[types.NamespacedName][]Endpoint{
			set: {{Pod: "a", URL: a + "/metrics"}, {Pod: "b", URL: b + "/metrics"}},
		},
	}
	addr, server, client := startScaler(t, src)
	pair, err := tls.X509KeyPair(client["tls.crt"], client["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, client["ca.crt"], &pair)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The metadata KEDA sends is the trigger's, as the controller writes it.
	ref := func(name string, extra ...string) *pb.ScaledObjectRef {
		md := map[string]string{"inferenceSetName": name, "inferenceSetNamespace": "models",
			"metricName": DefaultMetricName, "threshold": "5", "scalerAddress": Address("keda")}
		for i := 0; i < len(extra); i += 2 {
			md[extra[i]] = extra[i+1]
		}
		return &pb.ScaledObjectRef{Name: name, Namespace: "models", ScalerMetadata: md}
	}

	spec, err := c.GetMetricSpec(ctx, ref("phi-4-mini"))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].MetricName != DefaultMetricName || spec.MetricSpecs[0].TargetSizeFloat != 5 || spec.MetricSpecs[0].TargetSize != 5 {
		t.Fatalf("metric spec %v", spec)
	}
	eventually(t, 10*time.Second, "11 waiting requests through GetMetrics", func() (bool, string) {
		m, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref("phi-4-mini"), MetricName: DefaultMetricName})
		if err != nil {
			return false, err.Error()
		}
		v := m.MetricValues[0]
		return v.MetricName == DefaultMetricName && v.MetricValueFloat == 11 && v.MetricValue == 11, v.String()
	})
	if act, err := c.IsActive(ctx, ref("phi-4-mini")); err != nil || !act.Result {
		t.Fatalf("IsActive(ready set) = %v, %v", act, err)
	}
	if act, err := c.IsActive(ctx, ref("idle")); err != nil || act.Result {
		t.Fatalf("IsActive(not ready set) = %v, %v", act, err)
	}
	// No running pod: nothing can be queued, so 0 rather than an error.
	if m, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref("idle"), MetricName: DefaultMetricName}); err != nil || m.MetricValues[0].MetricValueFloat != 0 {
		t.Fatalf("GetMetrics(no pods) = %v, %v", m, err)
	}
	if _, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref("gone")}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetMetrics(missing set) err = %v, want NotFound", err)
	}
	if _, err := c.GetMetricSpec(ctx, ref("phi-4-mini", "threshold", "zero")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetMetricSpec(bad threshold) err = %v, want InvalidArgument", err)
	}
	stream, err := c.StreamIsActive(ctx, ref("phi-4-mini"))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("StreamIsActive err = %v, want Unimplemented", err)
	}

	// Without a client certificate, or with one from another CA, the handshake fails.
	for name, cert := range map[string]*tls.Certificate{"no client certificate": nil, "foreign CA": foreignClient(t)} {
		c := dial(t, addr, server["ca.crt"], cert)
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.IsActive(cctx, ref("phi-4-mini"))
		ccancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: err = %v, want Unavailable (handshake refused)", name, err)
		}
	}
}

func foreignClient(t *testing.T) *tls.Certificate {
	_, other, err := IssueCertificates("keda")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(other["tls.crt"], other["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}
