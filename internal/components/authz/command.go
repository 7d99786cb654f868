package authz

import (
	"context"
	"fmt"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Options configures `stackd authz`.
type Options struct {
	BindAddress string
	// GRPCPort is the ext_authz port; 9001 as upstream's apikey-authz Service (kaito-keda-auth-facts §4.1).
	GRPCPort int
	// Operator runs the APIKey operator in this process too. Upstream ships the authz server and
	// the operator as two Deployments; the offline profile can run either shape.
	Operator                bool
	MetricsBindAddress      string
	HealthProbeBindAddress  string
	LeaderElect             bool
	LeaderElectionNamespace string
}

// NewCommand returns `stackd authz`.
func NewCommand() *cobra.Command {
	o := Options{GRPCPort: 9001, Operator: true}
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "API-key ext_authz server (gRPC) and the APIKey operator",
		Long: `authz admits a gateway request only when "Authorization: Bearer <key>" carries the key of the
namespace the request is for: the ext_authz context extension gateway-namespace, else the first
label of the Host. Keys live in Secret llm-api-key (data key apiKey), which the operator creates
once for every APIKey (kaito.sh/v1alpha1).`,
		Example: `  # both parts, in cluster
  stackd authz

  # only the ext_authz server, e.g. as a second Deployment next to a leader-elected operator
  stackd authz --operator=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BindAddress, "bind-address", "", "address the ext_authz listener binds to (empty: all interfaces)")
	f.IntVar(&o.GRPCPort, "grpc-port", o.GRPCPort, "ext_authz gRPC port (also serves gRPC health)")
	f.BoolVar(&o.Operator, "operator", o.Operator, "also run the APIKey operator")
	f.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "operator metrics address (0 disables it)")
	f.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "operator /healthz and /readyz address")
	f.BoolVar(&o.LeaderElect, "leader-elect", false, "elect one active operator among replicas")
	f.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's)")
	return cmd
}

// Run connects to the cluster and serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	ctrl.SetLogger(zap.New())
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	var mgr ctrl.Manager
	if o.Operator {
		if mgr, err = newManager(o, cfg); err != nil {
			return err
		}
	}
	ln, err := extproc.Listen(ctx, o.BindAddress, o.GRPCPort, "ext_authz")
	if err != nil {
		return err
	}

	store := NewSecretStore(cs)
	g, gctx := errgroup.WithContext(ctx)
	store.Start(gctx)
	defer store.Shutdown()
	g.Go(func() error { return Serve(gctx, ln, store, store.WaitForSync) })
	if mgr != nil {
		g.Go(func() error {
			if err := mgr.Start(gctx); err != nil {
				return fmt.Errorf("running the APIKey operator: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

func newManager(o Options, cfg *rest.Config) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	if err := AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		// Only the Secrets this operator owns are cached, never the cluster's other Secrets.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", SecretName)},
		}},
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "apikey-operator.kaito.sh",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("apikey-operator")}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the APIKey controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Serve runs the ext_authz server on ln until ctx ends. gRPC health reports SERVING only after
// synced returns, so a pod is not sent traffic it would answer from an empty key cache.
func Serve(ctx context.Context, ln net.Listener, keys KeyStore, synced func(context.Context) error) error {
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, NewServer(keys))
	hs := health.NewServer()
	service := authv3.Authorization_ServiceDesc.ServiceName
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return extproc.ServeGRPC(gctx, srv, ln) })
	g.Go(func() error {
		if synced != nil {
			if err := synced(gctx); err != nil {
				if gctx.Err() != nil {
					return nil // stopped before the cache synced
				}
				return err
			}
		}
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
		<-gctx.Done()
		hs.Shutdown()
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	return nil
}
