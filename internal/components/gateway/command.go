package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/inference-sandbox/sandbox/internal/components/gateway/controller"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// Options configures `stackd gateway`, the data plane of one Gateway.
type Options struct {
	Gateway     string
	BindAddress string
	Port        int
	HealthPort  int
	Drain       Drain
	Config      Config
}

// NewCommand returns `stackd gateway` (the data plane) with `stackd gateway controller`.
func NewCommand() *cobra.Command {
	o := Options{Port: 8080, HealthPort: 8081, Drain: Drain{Delay: 5 * time.Second, Timeout: 25 * time.Second}, Config: Config{
		AuthzTimeout: 5 * time.Second, BBRTimeout: 5 * time.Second, PickerTimeout: 10 * time.Second, ReconnectWait: DefaultReconnectWait,
		MaxBodyBytes: DefaultMaxBodyBytes, DialTimeout: 5 * time.Second, BackendTimeout: 10 * time.Minute,
	}}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Gateway API data plane for gatewayClassName sandbox (ext_authz → BBR → HTTPRoute → endpoint picker → model)",
		Long: `gateway serves one Gateway: it watches the HTTPRoutes and InferencePools of the Gateway's
namespace and proxies each request through ext_authz, the body-based router and the pool's
endpoint picker (Envoy ext_proc, FULL_DUPLEX_STREAMED) to the chosen model endpoint.
The controller subcommand gives every Gateway of the class its own data plane.`,
		Example: `  # as the controller deploys it for Gateway models/models-gw
  stackd gateway --gateway models/models-gw \
    --authz-address apikey-authz.sandbox-system.svc.cluster.local:9001 \
    --bbr-address body-based-router.sandbox-system.svc.cluster.local:9004`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Gateway, "gateway", "", "the Gateway to serve, namespace/name (required)")
	f.StringVar(&o.BindAddress, "bind-address", "", "address the listeners bind to (empty: all interfaces)")
	f.IntVar(&o.Port, "port", o.Port, "HTTP port of the data plane")
	f.IntVar(&o.HealthPort, "health-port", o.HealthPort, "port of /healthz and /readyz")
	c := &o.Config
	f.StringVar(&c.AuthzAddress, "authz-address", "", "ext_authz gRPC server, host:port (empty: no authorization)")
	f.DurationVar(&c.AuthzTimeout, "authz-timeout", c.AuthzTimeout, "timeout of one ext_authz Check")
	f.BoolVar(&c.NoNamespaceExtension, "no-namespace-extension", false,
		"do not send the gateway-namespace context extension; the authz server then reads the namespace from the Host")
	f.StringVar(&c.BBRAddress, "bbr-address", "", "body-based router ext_proc server, host:port (empty: no BBR)")
	f.DurationVar(&c.BBRTimeout, "bbr-timeout", c.BBRTimeout, "how long BBR may take to answer")
	f.DurationVar(&c.PickerTimeout, "epp-timeout", c.PickerTimeout, "how long an endpoint picker may take to answer")
	f.DurationVar(&c.ReconnectWait, "epp-reconnect-wait", c.ReconnectWait,
		"how long a request waits for a new connection to an endpoint picker whose connection failed before the request reached it")
	f.BoolVar(&c.SkipPickerResponse, "epp-skip-response", false, "do not send responses through the endpoint picker")
	f.Int64Var(&c.MaxBodyBytes, "max-request-body-bytes", c.MaxBodyBytes, "largest request body; larger ones get 413")
	f.DurationVar(&c.DialTimeout, "dial-timeout", c.DialTimeout, "timeout of connecting to a model endpoint")
	f.DurationVar(&c.BackendTimeout, "backend-timeout", c.BackendTimeout, "how long a model endpoint may take to start answering")
	f.DurationVar(&o.Drain.Delay, "drain-delay", o.Drain.Delay,
		"after SIGTERM, how long to keep serving with readiness failing and Connection: close, so clients move off before connections are closed")
	f.DurationVar(&o.Drain.Timeout, "drain-timeout", o.Drain.Timeout, "after the drain delay, how long in-flight requests may take to finish")
	_ = cmd.MarkFlagRequired("gateway")
	cmd.AddCommand(controller.NewCommand())
	return cmd
}

// Run serves the Gateway's data plane until ctx ends.
func Run(ctx context.Context, o Options) error {
	ns, name, err := cache.SplitMetaNamespaceKey(o.Gateway)
	if err != nil || ns == "" || name == "" {
		return fmt.Errorf("--gateway %q: want namespace/name", o.Gateway)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	o.Config.Gateway = types.NamespacedName{Namespace: ns, Name: name}
	o.Config.Logger = log
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the dynamic Kubernetes client: %w", err)
	}
	table := &routing.Informers{Dynamic: dyn, Clientset: cs, Gateway: o.Config.Gateway, Log: log}
	srv, err := New(o.Config, table)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := extproc.Listen(ctx, o.BindAddress, o.Port, "the gateway")
	if err != nil {
		return err
	}
	hl, err := extproc.Listen(ctx, o.BindAddress, o.HealthPort, "health checks")
	if err != nil {
		ln.Close()
		return err
	}
	// The signal (ctx) starts the drain; the route table and the probes keep running until the
	// data plane has let go of its clients.
	runCtx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	drain := o.Drain
	drain.Draining = new(atomic.Bool)
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return table.Run(gctx) })
	g.Go(func() error {
		defer stopAll()
		return extproc.ServeHTTPDraining(gctx, ctx, srv, ln, drain)
	})
	g.Go(func() error { return extproc.ServeHTTP(gctx, healthHandler(table.Synced, drain.Draining.Load), hl) })
	log.Info("gateway data plane started", "gateway", o.Gateway, "port", o.Port)
	return g.Wait()
}

// healthHandler answers probes: alive always, ready once the route caches have synced, so that
// a new pod is not sent traffic it would answer from an empty table with 404s, and not ready
// again while it drains.
func healthHandler(synced, draining func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !synced() {
			http.Error(w, "route caches not synced", http.StatusServiceUnavailable)
			return
		}
		if draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}
