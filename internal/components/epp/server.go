// Package epp is the offline profile's endpoint picker: an Envoy ext_proc server that picks the
// model-server pod for each inference request of one InferencePool, with the prefix-cache,
// queue and KV-cache aware scheduling of the llm-d / Gateway API Inference Extension picker it
// stands in for (../shared/facts/llm-d-facts.md §2).
package epp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/decision"
	"github.com/inference-sandbox/sandbox/internal/components/epp/objective"
	"github.com/inference-sandbox/sandbox/internal/components/epp/plugins"
	"github.com/inference-sandbox/sandbox/internal/components/epp/prefix"
	"github.com/inference-sandbox/sandbox/internal/components/epp/saturation"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scrape"
	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Health service names answered on the health port: upstream's (llm-d-facts §2.12) plus the
// one the production chart's probes ask for (upstream-production-stack §2.3).
var healthServices = []string{"", "liveness", "readiness", "inference-extension",
	extprocv3.ExternalProcessor_ServiceDesc.ServiceName}

// Options configure a picker. Addresses use Go's host:port form; port 0 picks a free port.
type Options struct {
	PoolName      string
	PoolNamespace string
	PoolGroup     string
	// Source overrides discovery (static lists, tests); otherwise the Kubernetes pool is watched.
	Source datastore.Source
	// Objectives keeps the InferenceObjective store current (in a cluster: an informer); nil
	// leaves it empty, so every request has priority 0 unless a test fills Server.Objectives().
	Objectives ObjectiveSource
	// ConfigText is an EndpointPickerConfig; empty means scheduling.DefaultConfig.
	ConfigText             string
	GRPCAddr               string
	HealthAddr             string
	MetricsAddr            string
	RefreshMetricsInterval time.Duration
	StalenessThreshold     time.Duration
	// SecureServing serves ext_proc over TLS with a self-signed certificate, as upstream's
	// --secure-serving default does.
	SecureServing bool
	MaxBodyBytes  int
	DecisionRing  int
	Log           *slog.Logger
}

// ObjectiveSource fills the picker's InferenceObjective store until ctx ends.
type ObjectiveSource interface {
	Run(ctx context.Context, store *objective.Store) error
}

// Server is a running picker.
type Server struct {
	opts       Options
	store      *datastore.Store
	objectives *objective.Store
	processor  *Processor
	ring       *decision.Ring
	health     *health.Server
	grpcLn     net.Listener
	healthLn   net.Listener
	metricsLn  net.Listener
	done       chan struct{}
	err        error
}

// Store exposes the endpoint set, for tests that churn it and for embedding callers.
func (s *Server) Store() *datastore.Store { return s.store }

// Objectives is the InferenceObjective priority store admission reads.
func (s *Server) Objectives() *objective.Store { return s.objectives }

// GRPCAddr is the ext_proc listen address.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// HealthAddr is the gRPC health listen address.
func (s *Server) HealthAddr() string { return s.healthLn.Addr().String() }

// MetricsAddr is the Prometheus and /decisions listen address.
func (s *Server) MetricsAddr() string { return s.metricsLn.Addr().String() }

// Decisions is the decision ring.
func (s *Server) Decisions() *decision.Ring { return s.ring }

// Wait blocks until the server stopped (its context ended or a listener failed).
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Start builds the picker, opens its three listeners and serves until ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.StalenessThreshold <= 0 {
		opts.StalenessThreshold = 2 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.DecisionRing <= 0 {
		opts.DecisionRing = 1024
	}
	if opts.Source == nil {
		return nil, errors.New("no endpoint source: name an InferencePool or give a static endpoint list")
	}
	cfg := opts.ConfigText
	if cfg == "" {
		cfg = scheduling.DefaultConfig
	}
	store := datastore.NewStore()
	poolName := opts.PoolName
	if poolName == "" {
		poolName = "static"
	}

	var m *metrics
	var indexSize func() int
	// The scheduler's plugin observers need the metrics, and the prefix-indexer gauge needs the
	// scheduler's prefix plugin: resolve the observers lazily through m.
	observe := func(point string, tn scheduling.TypedName) scheduling.Observer { return m.observerFor(point, tn) }
	m = newMetrics(store, poolName, opts.StalenessThreshold, func() int { return indexSize() })
	sched, err := scheduling.Load([]byte(cfg), plugins.Registry(),
		scheduling.Handle{Store: store, Staleness: opts.StalenessThreshold}, observe)
	if err != nil {
		return nil, err
	}
	indexSize = func() int {
		n := 0
		for _, p := range sched.Plugins() {
			if ps, ok := p.(*prefix.Scorer); ok {
				n += ps.Index().Size()
			}
		}
		return n
	}

	s := &Server{opts: opts, store: store, ring: decision.NewRing(opts.DecisionRing), health: health.NewServer(),
		done: make(chan struct{})}
	// Without a saturationDetector in the config, admission uses the utilization detector with
	// upstream's defaults, as upstream does.
	var detector scheduling.SaturationDetector = saturation.Default()
	if d := sched.SaturationDetector(); d != nil {
		detector = d
	}
	s.objectives = objective.NewStore()
	s.processor = &Processor{store: store, sched: sched, detector: detector, objectives: s.objectives,
		metrics: m, ring: s.ring, maxBody: opts.MaxBodyBytes, log: opts.Log}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	s.health.SetServingStatus("liveness", healthpb.HealthCheckResponse_SERVING)

	if s.grpcLn, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen for ext_proc on %s: %w", opts.GRPCAddr, err)
	}
	if s.healthLn, err = net.Listen("tcp", opts.HealthAddr); err != nil {
		s.grpcLn.Close()
		return nil, fmt.Errorf("listen for gRPC health on %s: %w", opts.HealthAddr, err)
	}
	if s.metricsLn, err = net.Listen("tcp", opts.MetricsAddr); err != nil {
		s.grpcLn.Close()
		s.healthLn.Close()
		return nil, fmt.Errorf("listen for metrics on %s: %w", opts.MetricsAddr, err)
	}

	grpcOpts := extproc.ServerOptions()
	if opts.SecureServing {
		cert, err := selfSignedCert()
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	}
	extSrv := grpc.NewServer(grpcOpts...)
	extprocv3.RegisterExternalProcessorServer(extSrv, s.processor)
	healthSrv := grpc.NewServer()
	healthpb.RegisterHealthServer(healthSrv, s.health)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.Handle("/decisions", s.ring.Handler())

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var errOnce sync.Once
	fail := func(err error) {
		if err != nil {
			errOnce.Do(func() { s.err = err })
			cancel()
		}
	}
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail(f())
		}()
	}
	run(func() error { return opts.Source.Run(ctx, store) })
	if opts.Objectives != nil {
		run(func() error { return opts.Objectives.Run(ctx, s.objectives) })
	}
	run(func() error {
		scrape.New(scrape.Options{Interval: opts.RefreshMetricsInterval, Log: opts.Log}).Run(ctx, store)
		return nil
	})
	run(func() error { return s.watchReadiness(ctx) })
	run(func() error { return extproc.ServeGRPC(ctx, extSrv, s.grpcLn) })
	run(func() error { return extproc.ServeGRPC(ctx, healthSrv, s.healthLn) })
	run(func() error { return extproc.ServeHTTP(ctx, mux, s.metricsLn) })
	go func() {
		wg.Wait()
		cancel()
		close(s.done)
	}()
	return s, nil
}

func (s *Server) closeListeners() {
	s.grpcLn.Close()
	s.healthLn.Close()
	s.metricsLn.Close()
}

// watchReadiness flips the readiness services to SERVING once discovery has synced, so the
// data plane's health check keeps traffic away until the pool is known.
func (s *Server) watchReadiness(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !s.store.Synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	<-ctx.Done()
	s.health.Shutdown()
	return nil
}

// namespaceDefault is upstream's --pool-namespace default: $NAMESPACE, else "default".
func namespaceDefault() string {
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}
