package controller

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// NewCommand returns `stackd gateway controller`.
func NewCommand() *cobra.Command {
	o := Options{NodePortGateway: "models/models-gw", NodePort: DefaultNodePort}
	var metricsAddr, probeAddr string
	var leaderElect bool
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Gateway API controller for gatewayClassName sandbox: one data-plane Deployment and Service per Gateway",
		Example: `  stackd gateway controller --image stackd:dev \
    --authz-address apikey-authz.sandbox-system.svc.cluster.local:9001 \
    --bbr-address body-based-router.sandbox-system.svc.cluster.local:9004`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Image == "" {
				return fmt.Errorf("--image is required: the stackd image the data planes run")
			}
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			ctrl.SetLogger(zap.New())
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("kubernetes client configuration: %w", err)
			}
			scheme := runtime.NewScheme()
			if err := clientgoscheme.AddToScheme(scheme); err != nil {
				return fmt.Errorf("building the scheme: %w", err)
			}
			if err := gatewayv1.Install(scheme); err != nil {
				return fmt.Errorf("building the scheme: %w", err)
			}
			mgr, err := ctrl.NewManager(cfg, ctrl.Options{
				Scheme:                 scheme,
				Metrics:                metricsserver.Options{BindAddress: metricsAddr},
				HealthProbeBindAddress: probeAddr,
				LeaderElection:         leaderElect,
				LeaderElectionID:       "gateway-controller.inference-sandbox.dev",
			})
			if err != nil {
				return fmt.Errorf("creating the controller manager: %w", err)
			}
			if err := (&Reconciler{Client: mgr.GetClient(), Options: o}).SetupWithManager(mgr); err != nil {
				return err
			}
			if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
				return err
			}
			if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
				return err
			}
			if err := mgr.Start(ctx); err != nil {
				return fmt.Errorf("running the gateway controller: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "stackd image of the data-plane pods (required)")
	f.StringVar(&o.AuthzAddress, "authz-address", "", "ext_authz server every data plane uses, host:port")
	f.StringVar(&o.BBRAddress, "bbr-address", "", "body-based router every data plane uses, host:port")
	f.StringVar(&o.NodePortGateway, "node-port-gateway", o.NodePortGateway,
		"Gateway (namespace/name) published on --node-port; without it, the oldest Gateway of the class is")
	f.Int32Var(&o.NodePort, "node-port", o.NodePort, "node port of the published Gateway (-1: publish none)")
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "metrics address (0 disables it)")
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz address")
	f.BoolVar(&leaderElect, "leader-elect", false, "elect one active controller among replicas")
	return cmd
}
