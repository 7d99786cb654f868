package bbr

import (
	"context"
	"fmt"
	"net"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Options configures `stackd bbr`. Flag names and default ports are upstream BBR's, so the same
// Deployment args work for either image (llm-d-facts §3).
type Options struct {
	BindAddress    string
	GRPCPort       int
	GRPCHealthPort int
	MetricsPort    int
	Streaming      bool
	MaxBodyBytes   int
	SecureServing  bool
}

// NewCommand returns `stackd bbr`.
func NewCommand() *cobra.Command {
	o := Options{GRPCPort: 9004, GRPCHealthPort: 9005, MetricsPort: 9090, MaxBodyBytes: DefaultMaxBodyBytes}
	cmd := &cobra.Command{
		Use:   "bbr",
		Short: "Body-based router: ext_proc server copying the body's model into X-Gateway-Model-Name",
		Example: `  # as deployed by the offline profile (Envoy-style FULL_DUPLEX_STREAMED request bodies)
  stackd bbr --streaming

  # on loopback with other ports
  stackd bbr --bind-address 127.0.0.1 --grpc-port 19004 --grpc-health-port 19005 --metrics-port 19090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BindAddress, "bind-address", "", "address the three listeners bind to (empty: all interfaces)")
	f.IntVar(&o.GRPCPort, "grpc-port", o.GRPCPort, "ext_proc gRPC port")
	f.IntVar(&o.GRPCHealthPort, "grpc-health-port", o.GRPCHealthPort, "gRPC health-check port for probes")
	f.IntVar(&o.MetricsPort, "metrics-port", o.MetricsPort, "Prometheus /metrics port")
	f.BoolVar(&o.Streaming, "streaming", false,
		"expect FULL_DUPLEX_STREAMED request bodies when the data plane does not announce its mode")
	f.IntVar(&o.MaxBodyBytes, "max-body-bytes", o.MaxBodyBytes, "largest request body routed; larger ones get 413")
	// Accepted so upstream Deployment args work unchanged; the in-cluster hop is plaintext h2c
	// in the reference deployment too (upstream-production-stack §7.6).
	f.BoolVar(&o.SecureServing, "secure-serving", false, "TLS on the gRPC port (not supported; must be false)")
	return cmd
}

// Run listens on the configured ports and serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.SecureServing {
		return fmt.Errorf("--secure-serving=true is not supported by the offline BBR; run it with --secure-serving=false")
	}
	ext, err := extproc.Listen(ctx, o.BindAddress, o.GRPCPort, "ext_proc")
	if err != nil {
		return err
	}
	hl, err := extproc.Listen(ctx, o.BindAddress, o.GRPCHealthPort, "gRPC health")
	if err != nil {
		ext.Close()
		return err
	}
	ml, err := extproc.Listen(ctx, o.BindAddress, o.MetricsPort, "metrics")
	if err != nil {
		ext.Close()
		hl.Close()
		return err
	}
	return Serve(ctx, o, ext, hl, ml)
}

// Serve runs BBR on ready listeners (ext_proc, health, metrics) until ctx ends; tests pass
// loopback listeners on port 0.
func Serve(ctx context.Context, o Options, ext, healthLn, metricsLn net.Listener) error {
	reg, m := newRegistry()
	srv := NewServer(o.Streaming, o.MaxBodyBytes, m)

	// A BUFFERED body comes in one message, so the receive limit must fit the largest body.
	grpcSrv := grpc.NewServer(append(extproc.ServerOptions(), grpc.MaxRecvMsgSize(srv.maxBodyBytes+1<<20))...)
	extprocv3.RegisterExternalProcessorServer(grpcSrv, srv)

	hs := health.NewServer()
	hs.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthSrv := grpc.NewServer()
	healthpb.RegisterHealthServer(healthSrv, hs)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return extproc.ServeGRPC(gctx, grpcSrv, ext) })
	g.Go(func() error { return extproc.ServeGRPC(gctx, healthSrv, healthLn) })
	g.Go(func() error {
		// Report NOT_SERVING as soon as shutdown starts, while ext_proc streams drain.
		<-gctx.Done()
		hs.Shutdown()
		return nil
	})
	g.Go(func() error {
		return extproc.ServeHTTP(gctx, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), metricsLn)
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("bbr: %w", err)
	}
	return nil
}
