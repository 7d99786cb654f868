package epp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/objective"
	"github.com/inference-sandbox/sandbox/internal/kube"
)

// flags are `stackd epp`'s command line; names and defaults are upstream's (llm-d-facts §2.1) so
// the production chart's Deployment args work unchanged.
type flags struct {
	poolName, poolNamespace, poolGroup string
	configFile, configText             string
	bindAddress                        string
	grpcPort, healthPort, metricsPort  int
	kubeconfig                         string
	endpoints                          string
	refresh, staleness                 time.Duration
	secureServing                      bool
	verbosity                          int
	// Accepted for compatibility with upstream args; they select features this picker
	// does not have (tracing, zap encoders, metrics auth).
	zapEncoder  string
	tracing     bool
	metricsAuth bool
}

// NewCommand returns `stackd epp`.
func NewCommand() *cobra.Command {
	f := flags{grpcPort: 9002, healthPort: 9003, metricsPort: 9090, poolGroup: objective.DefaultPoolGroup,
		refresh: 50 * time.Millisecond, staleness: 2 * time.Second, secureServing: true}
	cmd := &cobra.Command{
		Use:   "epp",
		Short: "Endpoint picker: prefix-cache and load aware ext_proc scheduler for one InferencePool",
		Example: `  # as the offline profile deploys it (args of the upstream chart)
  stackd epp --pool-name phi-4-mini-inferencepool --pool-namespace models \
    --config-file /config/default-plugins.yaml --secure-serving=false

  # without Kubernetes, in front of two local simulators
  stackd epp --endpoints 127.0.0.1:8000,127.0.0.1:8001 --secure-serving=false

  # watch routing decisions live
  curl -sN 'http://127.0.0.1:9090/decisions?follow=1'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return run(ctx, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.poolName, "pool-name", "", "InferencePool to serve (exactly one of --pool-name and --endpoints)")
	fl.StringVar(&f.poolNamespace, "pool-namespace", namespaceDefault(), "namespace of the InferencePool (default $NAMESPACE, else default)")
	fl.StringVar(&f.poolGroup, "pool-group", f.poolGroup, "API group of the InferencePool")
	fl.StringVar(&f.endpoints, "endpoints", "", "static comma-separated host:port endpoints instead of an InferencePool (benchmarks, tests)")
	fl.StringVar(&f.configFile, "config-file", "", "EndpointPickerConfig YAML file (default: queue 2, kv-cache-utilization 2, prefix-cache 3)")
	fl.StringVar(&f.configText, "config-text", "", "EndpointPickerConfig YAML inline")
	fl.StringVar(&f.bindAddress, "bind-address", "", "address the three listeners bind to (empty: all interfaces)")
	fl.IntVar(&f.grpcPort, "grpc-port", f.grpcPort, "ext_proc gRPC port")
	fl.IntVar(&f.healthPort, "grpc-health-port", f.healthPort, "gRPC health port")
	fl.IntVar(&f.metricsPort, "metrics-port", f.metricsPort, "Prometheus /metrics and /decisions port")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fl.DurationVar(&f.refresh, "refresh-metrics-interval", f.refresh, "per-endpoint metrics scrape period")
	fl.DurationVar(&f.staleness, "metrics-staleness-threshold", f.staleness, "age after which scraped metrics are not trusted")
	fl.BoolVar(&f.secureServing, "secure-serving", f.secureServing, "serve ext_proc over TLS with a self-signed certificate")
	fl.IntVar(&f.verbosity, "v", 0, "log verbosity; 2 and above logs every rejected request")
	fl.StringVar(&f.zapEncoder, "zap-encoder", "json", "accepted for compatibility; logs are always JSON")
	fl.BoolVar(&f.tracing, "tracing", false, "accepted for compatibility; tracing is not implemented")
	fl.BoolVar(&f.metricsAuth, "metrics-endpoint-auth", false, "accepted for compatibility; /metrics is never authenticated")
	return cmd
}

func run(ctx context.Context, f flags) error {
	level := slog.LevelInfo
	if f.verbosity >= 2 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := Options{
		PoolName: f.poolName, PoolNamespace: f.poolNamespace, PoolGroup: f.poolGroup,
		ConfigText:             f.configText,
		GRPCAddr:               net.JoinHostPort(f.bindAddress, strconv.Itoa(f.grpcPort)),
		HealthAddr:             net.JoinHostPort(f.bindAddress, strconv.Itoa(f.healthPort)),
		MetricsAddr:            net.JoinHostPort(f.bindAddress, strconv.Itoa(f.metricsPort)),
		RefreshMetricsInterval: f.refresh, StalenessThreshold: f.staleness,
		SecureServing: f.secureServing, Log: log,
	}
	if f.configFile != "" {
		if f.configText != "" {
			return fmt.Errorf("--config-file and --config-text are mutually exclusive")
		}
		b, err := os.ReadFile(f.configFile)
		if err != nil {
			return fmt.Errorf("read --config-file: %w", err)
		}
		opts.ConfigText = string(b)
	}
	switch {
	case (f.poolName == "") == (f.endpoints == ""):
		return fmt.Errorf("give exactly one of --pool-name and --endpoints")
	case f.endpoints != "":
		specs, err := datastore.ParseStatic(f.endpoints)
		if err != nil {
			return fmt.Errorf("--endpoints: %w", err)
		}
		opts.Source = datastore.StaticSource(specs)
	default:
		src, objectives, err := kubeSources(f, log)
		if err != nil {
			return err
		}
		opts.Source, opts.Objectives = src, objectives
	}
	srv, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	log.Info("endpoint picker serving", "pool", f.poolName, "namespace", f.poolNamespace, "static", f.endpoints,
		"extProc", srv.GRPCAddr(), "health", srv.HealthAddr(), "metrics", srv.MetricsAddr())
	return srv.Wait()
}

// kubeSources watches the pool and its pods, and the InferenceObjectives of the pool's namespace.
func kubeSources(f flags, log *slog.Logger) (*datastore.KubeSource, *objective.Watcher, error) {
	var c *kube.Client
	var err error
	if f.kubeconfig != "" {
		c, err = kube.New(f.kubeconfig)
	} else {
		var cfg *rest.Config
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, nil, fmt.Errorf("in-cluster Kubernetes configuration (use --kubeconfig outside a cluster): %w", err)
		}
		c, err = kube.NewForConfig(cfg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("Kubernetes client for InferencePool %s/%s: %w", f.poolNamespace, f.poolName, err)
	}
	return &datastore.KubeSource{Dynamic: c.Dynamic, Clientset: c.Clientset, Namespace: f.poolNamespace,
			Name: f.poolName, Group: f.poolGroup, Log: log},
		&objective.Watcher{Dynamic: c.Dynamic, Discovery: c.Clientset.Discovery(), Namespace: f.poolNamespace,
			PoolName: f.poolName, PoolGroup: f.poolGroup, Log: log}, nil
}
