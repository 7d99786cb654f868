// Package up implements `sandbox up`.
package up

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/lifecycle"
)

// NewCmd returns `sandbox up`; runF replaces the run function in tests of flag parsing.
func NewCmd(f *cmdutil.Factory, runF func(*lifecycle.Options) error) *cobra.Command {
	opts := &lifecycle.Options{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create (or repair) the sandbox cluster and install the stack",
		Long: `Create a kind cluster with fake GPU worker nodes and install the inference stack on it.

Steps, each shown as it runs: check the container engine, install the egress guard (the
offline profile refuses to start without it), build or reuse the node image and the
component image, create or reuse the cluster, load the images, install the components.

Running up again on an existing sandbox is a fast repair: it changes only what is missing.
The kubeconfig is written to the sandbox's state directory (see: sandbox kubeconfig);
~/.kube/config is never touched.`,
		Example: `  # everything, offline, with the defaults (1 control-plane + 2 workers, 4 fake GPUs each)
  sudo sandbox up

  # a bigger cluster under another name
  sudo sandbox up --name big --workers 3 --gpus-per-node 8

  # the production stack's own components (needs the internet; fails fast, creating nothing, without it)
  sudo sandbox up --profile upstream

  # then
  export KUBECONFIG=$(sandbox kubeconfig)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = f.Name
			opts.Kubeconfig = f.KubeconfigPath()
			opts.Status = f.Status()
			if runF != nil {
				return runF(opts)
			}
			res, err := lifecycle.Up(cmd.Context(), *opts)
			if err != nil {
				return err
			}
			printSummary(f.IOStreams.Out, opts, res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Profile, "profile", "", "component profile: offline (this repo's components, no internet) or upstream (Istio, KAITO, llm-d, llm-gateway-auth, KEDA from their registries); default: upstream when its registries answer within 2s, else offline")
	fl.IntVar(&opts.Workers, "workers", 2, "number of worker (fake GPU) nodes")
	fl.IntVar(&opts.GPUsPerNode, "gpus-per-node", 4, "fake nvidia.com/gpu capacity of each worker")
	fl.StringVar(&opts.Models, "models", "default", "models to deploy: default or none")
	fl.StringVar(&opts.NodeImage, "node-image", "", "use this kind node image instead of building the offline one")
	fl.StringVar(&opts.Stackd, "stackd", "", "path of the stackd binary (default: next to sandbox, or $SANDBOX_STACKD)")
	fl.IntVar(&opts.GatewayPort, "gateway-port", 0, "host port of the gateway on 127.0.0.1 (default 30080, or a free port)")
	fl.StringVar(&opts.Scaling, "scaling", lifecycle.ScalingFast, "autoscaling preset: fast (scales within a minute, for demos) or upstream (KAITO's timings)")
	fl.BoolVar(&opts.RetainOnFailure, "retain-on-failure", false, "keep the node containers when cluster creation fails (debug with docker exec)")
	return cmd
}

func printSummary(w io.Writer, o *lifecycle.Options, r *lifecycle.Result) {
	verb := "is up (repaired, nothing recreated)"
	if r.Created {
		verb = "is up (created)"
	}
	fmt.Fprintf(w, "\nSandbox %q %s in %s.\n", o.Name, verb, r.Duration.Round(1e8))
	fmt.Fprintf(w, "  kubeconfig:  %s\n", r.Kubeconfig)
	if r.GatewayURL != "" {
		fmt.Fprintf(w, "  endpoint:    %s   (namespace %s)\n", r.GatewayURL, r.Namespace)
	}
	if r.APIKey != "" {
		fmt.Fprintf(w, "  api key:     %s\n", r.APIKey)
	}
	fmt.Fprintf(w, "\nTry it:\n")
	if r.GatewayURL != "" && r.APIKey != "" {
		fmt.Fprintf(w, "  curl -s %s/v1/chat/completions \\\n    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n    -d '{\"model\":\"phi-4-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n", r.GatewayURL, r.APIKey)
	}
	fmt.Fprintf(w, "  export KUBECONFIG=%s\n  kubectl get nodes -L nvidia.com/gpu.product\n  sandbox status\n", r.Kubeconfig)
}
