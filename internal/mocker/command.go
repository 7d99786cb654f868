package mocker

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// NewCommand returns `stackd mocker`.
func NewCommand() *cobra.Command {
	var (
		selector    string
		metricsAddr string
		probeAddr   string
		resync      time.Duration
	)
	cfg := Config{}
	cmd := &cobra.Command{
		Use:   "mocker",
		Short: "Turn CPU nodes into fake GPU nodes (labels + nvidia.com/gpu capacity)",
		Example: `  stackd mocker --gpus-per-node 4
  stackd mocker --node-selector pool=gpu --gpu-product NVIDIA-H100-80GB-HBM3 --gpu-memory-mib 81559`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("--node-selector %q: %w", selector, err)
			}
			cfg.Selector = sel
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctrl.SetLogger(zap.New())
			scheme := runtime.NewScheme()
			if err := clientgoscheme.AddToScheme(scheme); err != nil {
				return err
			}
			restCfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("kubernetes client configuration: %w", err)
			}
			mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
				Scheme:                 scheme,
				Metrics:                metricsserver.Options{BindAddress: metricsAddr},
				HealthProbeBindAddress: probeAddr,
			})
			if err != nil {
				return fmt.Errorf("creating the controller manager: %w", err)
			}
			r := &Reconciler{
				Client:   mgr.GetClient(),
				Config:   cfg,
				Recorder: mgr.GetEventRecorder("gpu-mocker"),
				Resync:   resync,
			}
			if err := r.SetupWithManager(mgr); err != nil {
				return err
			}
			if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
				return err
			}
			if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
				return err
			}
			return mgr.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&selector, "node-selector", DefaultSelector().String(), "label selector of the nodes to turn into GPU nodes")
	f.IntVar(&cfg.GPUsPerNode, "gpus-per-node", 4, "nvidia.com/gpu capacity of each mocked node")
	f.StringVar(&cfg.Product, "gpu-product", "NVIDIA-A100-SXM4-80GB", "GPU model (label nvidia.com/gpu.product)")
	f.IntVar(&cfg.MemoryMiB, "gpu-memory-mib", 81920, "memory of each GPU in MiB (label nvidia.com/gpu.memory)")
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.DurationVar(&resync, "resync", 30*time.Second, "re-check every node this often even without changes")
	return cmd
}
