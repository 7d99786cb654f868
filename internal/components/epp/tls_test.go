package epp

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// TestSecureServing checks upstream's default: ext_proc over TLS with a self-signed certificate
// that the data plane does not verify, and no plaintext.
func TestSecureServing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Start(ctx, Options{Source: datastore.StaticSource(twoEndpoints), SecureServing: true,
		GRPCAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, _, err := sendRequest(ctx, extprocv3.NewExternalProcessorClient(conn), "/v1/completions", []byte(`{"model":"m","prompt":"x"}`), 100)
	if err != nil || res.dest == "" {
		t.Fatalf("over TLS: %v %+v", err, res)
	}
	plain, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, _, err := sendRequest(ctx, extprocv3.NewExternalProcessorClient(plain), "/v1/completions", []byte(`{"model":"m","prompt":"x"}`), 100); err == nil {
		t.Error("plaintext client was served by a TLS picker")
	}
	cancel()
	if err := srv.Wait(); err != nil {
		t.Error(err)
	}
}
