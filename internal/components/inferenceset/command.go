package inferenceset

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// NewScheme returns the types the controller reads and writes.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	if err := AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	return scheme, nil
}

// ManagerOptions are the controller manager settings shared by the command and its tests: the
// cache holds only the InferenceSets' own StatefulSets, Services and pods, not every object of
// those kinds in the cluster.
func ManagerOptions(scheme *runtime.Scheme) ctrl.Options {
	req, _ := labels.NewRequirement(LabelCreatedBy, selection.Exists, nil) // a constant, valid key
	owned := cache.ByObject{Label: labels.NewSelector().Add(*req)}
	return ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&appsv1.StatefulSet{}: owned,
			&corev1.Service{}:     owned,
			&corev1.Pod{}:         owned,
		}},
	}
}

// NewCommand returns `stackd inferenceset`.
func NewCommand() *cobra.Command {
	o := DefaultOptions()
	var metricsAddr, probeAddr string
	var leaderElect bool
	cmd := &cobra.Command{
		Use:   "inferenceset --image IMAGE",
		Short: "InferenceSet controller: one simulator replica (StatefulSet + Service) per spec.replicas",
		Long: `inferenceset realises kaito.sh InferenceSets as KAITO does: replica i is a one-pod StatefulSet
and a Service named <inferenceset>-<i>; its pod, labelled inferenceset.kaito.sh/created-by, requests
one nvidia.com/gpu and runs "stackd sim" on port 5000 with the latency profile of the
kaito.sh/latency-profile annotation. Scaling down removes the highest index first and lets its
in-flight requests finish.`,
		Example: `  stackd inferenceset --image sandbox-stackd:0123abcd --leader-elect`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Image == "" {
				return fmt.Errorf("--image is required: the stackd image the replicas run")
			}
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			ctrl.SetLogger(zap.New())
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("kubernetes client configuration: %w", err)
			}
			return run(ctx, cfg, o, metricsAddr, probeAddr, leaderElect)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "stackd image of the model pods (required)")
	f.IntVar(&o.MaxNumSeqs, "max-num-seqs", o.MaxNumSeqs, "requests each simulator runs at once; the rest queue")
	f.Int64Var(&o.TerminationGracePeriod, "termination-grace-period", o.TerminationGracePeriod, "seconds a removed replica may take to drain")
	f.Int64Var(&o.PreStopSleep, "pre-stop-sleep", o.PreStopSleep, "seconds a removed replica keeps serving before it is signalled")
	f.DurationVar(&o.SurgeTimeout, "surge-timeout", o.SurgeTimeout, "how long a roll-out waits for its extra replica before rolling in place")
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "metrics address (0 disables it)")
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz address")
	f.BoolVar(&leaderElect, "leader-elect", false, "elect one active controller among replicas")
	return cmd
}

func run(ctx context.Context, cfg *rest.Config, o Options, metricsAddr, probeAddr string, leaderElect bool) error {
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	mo := ManagerOptions(scheme)
	mo.Metrics = metricsserver.Options{BindAddress: metricsAddr}
	mo.HealthProbeBindAddress = probeAddr
	mo.LeaderElection = leaderElect
	mo.LeaderElectionID = "inferenceset-controller.inference-sandbox.dev"
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := (&Reconciler{Client: mgr.GetClient(), Options: o, Recorder: mgr.GetEventRecorder("inferenceset-controller")}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the InferenceSet controller: %w", err)
	}
	return nil
}
