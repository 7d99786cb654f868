package scaler

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/inference-sandbox/sandbox/internal/components/scaler/externalscaler"
	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Options configures `stackd scaler`. Ports are upstream's (facts §3.2).
type Options struct {
	// WorkingNamespace is where the certificate Secrets live: KEDA's namespace.
	WorkingNamespace string
	GRPCPort         int
	MetricsPort      int
	GRPCHealthPort   int
	// PodMetricsPort is the model pods' /metrics port.
	PodMetricsPort int
	// Timing names the preset written into new ScaledObjects (upstream or fast).
	Timing      string
	LeaderElect bool
}

// NewCommand returns `stackd scaler`.
func NewCommand() *cobra.Command {
	o := Options{WorkingNamespace: os.Getenv("POD_NAMESPACE"), GRPCPort: GRPCPort, MetricsPort: 10451, GRPCHealthPort: 10452,
		PodMetricsPort: DefaultMetricsPort, Timing: TimingUpstream.Name}
	if o.WorkingNamespace == "" {
		o.WorkingNamespace = "keda"
	}
	cmd := &cobra.Command{
		Use:   "scaler",
		Short: "KEDA external scaler for InferenceSets (keda-kaito-scaler stand-in)",
		Long: `scaler creates a KEDA ScaledObject for every InferenceSet annotated with
scaledobject.kaito.sh/auto-provision: "true" (keys threshold, metricName, min-replicas,
max-replicas) and serves KEDA's external-scaler gRPC API over mutual TLS: the metric is the
sum of metricName (default vllm:num_requests_waiting) over the set's model pods, so the HPA
runs ceil(sum / threshold) replicas. It creates its certificates and the
ClusterTriggerAuthentication keda-kaito-scaler-creds itself, so it must run in KEDA's namespace.`,
		Example: `  # in cluster, next to KEDA, with the sandbox's demo-speed scaling
  stackd scaler --working-namespace=keda --timing=fast`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.WorkingNamespace, "working-namespace", o.WorkingNamespace, "namespace of the certificate Secrets (KEDA's; default $POD_NAMESPACE or keda)")
	f.IntVar(&o.GRPCPort, "grpc-port", o.GRPCPort, "external-scaler gRPC port (mutual TLS)")
	f.IntVar(&o.MetricsPort, "metrics-port", o.MetricsPort, "Prometheus metrics port (0 disables it)")
	f.IntVar(&o.GRPCHealthPort, "grpc-health-port", o.GRPCHealthPort, "plaintext gRPC health port (services liveness and readiness)")
	f.IntVar(&o.PodMetricsPort, "pod-metrics-port", o.PodMetricsPort, "port of the model pods' /metrics")
	f.StringVar(&o.Timing, "timing", o.Timing, "scaling speed written into ScaledObjects: upstream (keda-kaito-scaler v0.5) or fast (demo)")
	f.BoolVar(&o.LeaderElect, "leader-elect", false, "elect one active ScaledObject controller among replicas")
	return cmd
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	timing, err := TimingByName(o.Timing)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New())
	log := ctrl.Log.WithName("scaler")
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the scheme: %w", err)
	}
	// Only model pods are cached, not every pod of the cluster.
	hasCreator, err := labels.NewRequirement(LabelCreatedBy, selection.Exists, nil)
	if err != nil {
		return err
	}
	metricsAddr := "0"
	if o.MetricsPort != 0 {
		metricsAddr = fmt.Sprintf(":%d", o.MetricsPort)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.NewSelector().Add(*hasCreator)},
		}},
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  "0",
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "keda-kaito-scaler.kaito.sh",
		LeaderElectionNamespace: o.WorkingNamespace,
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}

	healthLn, err := extproc.Listen(ctx, "", o.GRPCHealthPort, "gRPC health")
	if err != nil {
		return err
	}
	hs := health.NewServer()
	setHealth(hs, "liveness", true)
	setHealth(hs, "readiness", false)
	healthSrv := grpc.NewServer()
	healthpb.RegisterHealthServer(healthSrv, hs)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return extproc.ServeGRPC(gctx, healthSrv, healthLn) })
	g.Go(func() error {
		// Like upstream v0.6, wait for the CRDs rather than crash-loop: KEDA and the
		// InferenceSet CRD may be installed after the scaler.
		if err := waitForKinds(gctx, mgr.GetRESTMapper(), log.Info, InferenceSetGVK, ScaledObjectGVK, ClusterTriggerAuthenticationGVK); err != nil || gctx.Err() != nil {
			return err
		}
		direct, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return fmt.Errorf("creating the Kubernetes client: %w", err)
		}
		tlsCfg, err := EnsureCertificates(gctx, direct, o.WorkingNamespace)
		if err != nil {
			return fmt.Errorf("preparing the scaler certificates: %w", err)
		}
		if err := EnsureTriggerAuthentication(gctx, direct); err != nil {
			return err
		}
		r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("keda-kaito-scaler"),
			Target: Target{ScalerAddress: Address(o.WorkingNamespace), AuthName: AuthName}, Timing: timing}
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the ScaledObject controller: %w", err)
		}
		srv := &Server{Source: &ClusterSource{Client: mgr.GetCache(), MetricsPort: o.PodMetricsPort}, Scraper: NewScraper()}
		ln, err := extproc.Listen(gctx, "", o.GRPCPort, "external scaler")
		if err != nil {
			return err
		}
		sg, sctx := errgroup.WithContext(gctx)
		sg.Go(func() error { return ServeScaler(sctx, ln, tlsCfg, srv) })
		sg.Go(func() error {
			if err := mgr.Start(sctx); err != nil {
				return fmt.Errorf("running the ScaledObject controller: %w", err)
			}
			return nil
		})
		sg.Go(func() error {
			if !mgr.GetCache().WaitForCacheSync(sctx) {
				return nil // stopping
			}
			log.Info("ready", "address", Address(o.WorkingNamespace), "timing", timing.Name)
			setHealth(hs, "readiness", true)
			return nil
		})
		return sg.Wait()
	})
	return g.Wait()
}

func setHealth(hs *health.Server, service string, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus(service, st)
	if service == "readiness" {
		hs.SetServingStatus("", st)
	}
}

// ServeScaler serves the external-scaler API on ln with mutual TLS until ctx ends.
func ServeScaler(ctx context.Context, ln net.Listener, tlsCfg *tls.Config, srv externalscaler.ExternalScalerServer) error {
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	externalscaler.RegisterExternalScalerServer(gs, srv)
	return extproc.ServeGRPC(ctx, gs, ln)
}

func waitForKinds(ctx context.Context, mapper meta.RESTMapper, logf func(string, ...any), kinds ...schema.GroupVersionKind) error {
	for {
		var missing []string
		for _, k := range kinds {
			if _, err := mapper.RESTMapping(k.GroupKind(), k.Version); err != nil {
				missing = append(missing, k.Kind+"."+k.Group+"/"+k.Version)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		logf("waiting for CRDs", "missing", missing)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}
