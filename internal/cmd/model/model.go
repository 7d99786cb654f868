// Package model implements `sandbox model deploy|list|delete`.
package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// NewCmd returns `sandbox model` with its subcommands.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model <command>",
		Short: "Deploy, list and delete models",
		Long: `Manage the models a workload namespace serves. Each model is one modeldeployment Helm
release named after it: an InferenceSet of simulator replicas on fake GPUs, an InferencePool
with its endpoint picker, and an HTTPRoute that sends requests whose "model" is the model's
name to that pool.`,
		Example: `  sandbox model deploy llama-3-8b --replicas 2
  sandbox model list
  sandbox model delete llama-3-8b`,
	}
	cmd.AddCommand(NewCmdDeploy(f, nil), NewCmdList(f, nil), NewCmdDelete(f, nil))
	return cmd
}

func client(f *cmdutil.Factory) (*kube.Client, error) {
	c, err := kube.New(f.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", f.Name, err)
	}
	return c, nil
}

// DeployOptions of `model deploy`.
type DeployOptions struct {
	Factory           *cmdutil.Factory
	Name              string
	Namespace         string
	Preset            string
	Replicas          int
	MinReplicas       int
	MaxReplicas       int
	LatencyProfile    string
	SimulatorArgs     string
	PickerConfigFile  string
	LatencyCalculator string
	Wait              time.Duration
}

// NewCmdDeploy returns `sandbox model deploy`; runF replaces the run function in tests.
func NewCmdDeploy(f *cmdutil.Factory, runF func(*DeployOptions) error) *cobra.Command {
	opts := &DeployOptions{Factory: f, Namespace: models.DefaultNamespace, Replicas: 1, Wait: 3 * time.Minute}
	cmd := &cobra.Command{
		Use:   "deploy NAME",
		Short: "Deploy a model, or change a deployed one",
		Long: `Deploy a simulator-backed model under NAME, the name clients send as "model". Running it
again for a deployed model changes it in place (replicas, autoscaling, latency).

Each replica requests one fake nvidia.com/gpu; replicas beyond the free GPUs stay Pending, and
the command says so. With --max-replicas the model is autoscaled on queued requests
(vllm:num_requests_waiting) between --min-replicas (default 1) and --max-replicas.
A namespace without a gateway gets one (the modelharness release) first.`,
		Example: `  # one replica, the preset and latency chosen from the name
  sandbox model deploy llama-3-8b

  # a fixed three replicas of a KAITO preset, with a large model's latency
  sandbox model deploy big --preset llama-3.3-70b-instruct --replicas 3 --latency-profile 70b-tp8

  # autoscaled between 1 and 4, in another namespace
  sandbox model deploy phi-4-mini --min-replicas 1 --max-replicas 4 --namespace team-a

  # the same model behind a random picker, to compare routing quality
  sandbox model deploy phi-4-mini --picker-config random-picker.yaml

  # four replicas shaped like issue #5's picker benchmark (small KV cache, per-token prefill)
  sandbox model deploy bench --replicas 4 --sim-args "--max-num-seqs 4 --kv-cache-size 96 --block-size 16 \
    --prefill-overhead 10ms --prefill-time-per-token 1ms --inter-token-latency 5ms --inter-token-latency-std-dev 0 --time-factor-under-load 1.5"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runDeploy(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Preset, "preset", "", "KAITO model preset (default: the known preset of NAME, else NAME)")
	fl.IntVar(&opts.Replicas, "replicas", opts.Replicas, "initial number of replicas")
	fl.IntVar(&opts.MinReplicas, "min-replicas", 0, "autoscaling minimum (default 1; needs --max-replicas)")
	fl.IntVar(&opts.MaxReplicas, "max-replicas", 0, "autoscale up to this many replicas (at least 2)")
	fl.StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "workload namespace")
	fl.StringVar(&opts.LatencyProfile, "latency-profile", "", "simulator latency: auto, small-l40s, 8b-h100 or 70b-tp8 (default auto)")
	fl.StringVar(&opts.LatencyCalculator, "latency-calculator", "", "simulator latency model: per-token or constant (default per-token)")
	fl.StringVar(&opts.SimulatorArgs, "sim-args", "", "extra simulator flags for every replica, e.g. \"--max-num-seqs 4 --kv-cache-size 96 --block-size 16\"")
	fl.StringVar(&opts.PickerConfigFile, "picker-config", "", "EndpointPickerConfig YAML file for the model's endpoint picker (default: the production scorers)")
	fl.DurationVar(&opts.Wait, "wait", opts.Wait, "how long to wait for the model to serve (0: do not wait)")
	return cmd
}

func (o *DeployOptions) deployOptions() models.DeployOptions {
	return models.DeployOptions{
		Name: o.Name, Namespace: o.Namespace, Preset: o.Preset, Replicas: o.Replicas,
		MinReplicas: o.MinReplicas, MaxReplicas: o.MaxReplicas,
		LatencyProfile: o.LatencyProfile, LatencyCalculator: o.LatencyCalculator, SimulatorArgs: o.SimulatorArgs,
		Kubeconfig: o.Factory.KubeconfigPath(), Wait: o.Wait,
	}
}

func runDeploy(ctx context.Context, o *DeployOptions) error {
	d := o.deployOptions()
	if o.PickerConfigFile != "" {
		data, err := os.ReadFile(o.PickerConfigFile)
		if err != nil {
			return fmt.Errorf("--picker-config: %w", err)
		}
		d.PickerConfig = string(data)
	}
	// Bad flags are reported before anything touches the cluster.
	if err := d.Validate(); err != nil {
		return err
	}
	c, err := client(o.Factory)
	if err != nil {
		return err
	}
	s := o.Factory.Status()
	ok, err := models.HarnessInstalled(ctx, c, o.Namespace)
	if err != nil {
		return err
	}
	if !ok {
		step := s.Start("Installing the serving harness of namespace %s (Gateway, catch-all route, API key)", o.Namespace)
		err := models.EnsureHarness(ctx, c, models.HarnessOptions{
			Namespace: o.Namespace, GatewayClass: "sandbox", SystemNamespace: models.SystemNamespace,
			Kubeconfig: d.Kubeconfig,
		})
		if err := step.End(err); err != nil {
			return err
		}
	}
	step := s.Start("Deploying model %s in namespace %s", o.Name, o.Namespace)
	wait := d.Wait
	d.Wait = 0
	if err := step.End(models.Deploy(ctx, c, d)); err != nil {
		return err
	}
	if wait > 0 {
		step = s.Start("Waiting for %s to serve", o.Name)
		if err := step.End(models.WaitReady(ctx, c, o.Namespace, o.Name, wait)); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Factory.IOStreams.Out, "model %s deployed in namespace %s; send requests with \"model\": %q\n", o.Name, o.Namespace, o.Name)
	return nil
}

// ListOptions of `model list`.
type ListOptions struct {
	Factory       *cmdutil.Factory
	Namespace     string
	AllNamespaces bool
	Output        string
	// BaseURL finds the gateway URL on this machine; nil uses the sandbox's published port.
	BaseURL func(ctx context.Context) (string, error)
}

// NewCmdList returns `sandbox model list`; runF replaces the run function in tests.
func NewCmdList(f *cmdutil.Factory, runF func(*ListOptions) error) *cobra.Command {
	opts := &ListOptions{Factory: f, Namespace: models.DefaultNamespace}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List models with their desired and ready replicas",
		Long: `List the models of a namespace: preset, desired and ready replicas (the autoscaler moves
the desired count), the autoscaling range, why a model is not ready, and the gateway URL
that serves it.`,
		Example: `  sandbox model list
  sandbox model list -A
  sandbox model list -o json | jq '.[] | {name, replicas, readyReplicas}'`,
		Aliases: []string{"ls"},
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Output != "" && opts.Output != "json" && opts.Output != "table" {
				return fmt.Errorf("-o %q: must be json or table", opts.Output)
			}
			if runF != nil {
				return runF(opts)
			}
			return runList(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "workload namespace")
	cmd.Flags().BoolVarP(&opts.AllNamespaces, "all-namespaces", "A", false, "list the models of every namespace")
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "output format: table (default) or json")
	return cmd
}

func runList(ctx context.Context, o *ListOptions) error {
	c, err := client(o.Factory)
	if err != nil {
		return err
	}
	lo := models.ListOptions{Namespace: o.Namespace}
	if o.AllNamespaces {
		lo.Namespace = ""
	}
	baseURL := o.BaseURL
	if baseURL == nil && o.Factory.Kubeconfig == "" {
		baseURL = func(ctx context.Context) (string, error) {
			port, err := cluster.New(progress.Discard()).GatewayPort(ctx, o.Factory.Name)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("http://127.0.0.1:%d", port), nil
		}
	}
	if baseURL != nil {
		// Without it, the list still shows the in-cluster gateway address.
		if u, err := baseURL(ctx); err == nil {
			lo.BaseURL = u
		}
	}
	list, err := models.List(ctx, c, lo)
	if err != nil {
		return err
	}
	return printModels(o.Factory.IOStreams.Out, o.Output, list)
}

func printModels(w io.Writer, output string, list []models.Model) error {
	if output == "json" {
		if list == nil {
			list = []models.Model{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "No models. Deploy one with: sandbox model deploy NAME")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tPRESET\tREADY\tAUTOSCALE\tENDPOINT\tSTATUS")
	for _, m := range list {
		scale := "-"
		if m.Autoscaled {
			scale = fmt.Sprintf("%d..%d", m.MinReplicas, m.MaxReplicas)
		}
		status := "Ready"
		if !m.Ready {
			status = "NotReady: " + m.Message
		}
		ep := m.Endpoint
		if ep == "" {
			ep = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", m.Namespace, m.Name, m.Preset, m.ReadyReplicas, m.Replicas, scale, ep, status)
	}
	return tw.Flush()
}

// DeleteOptions of `model delete`.
type DeleteOptions struct {
	Factory   *cmdutil.Factory
	Name      string
	Namespace string
}

// NewCmdDelete returns `sandbox model delete`; runF replaces the run function in tests.
func NewCmdDelete(f *cmdutil.Factory, runF func(*DeleteOptions) error) *cobra.Command {
	opts := &DeleteOptions{Factory: f, Namespace: models.DefaultNamespace}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a model",
		Long: `Delete a model's release: its route, pool, endpoint picker and InferenceSet. Replicas finish
their in-flight requests before they stop; requests for the model then get 404 model_not_found.`,
		Example: `  sandbox model delete llama-3-8b
  sandbox model delete phi-4-mini --namespace team-a`,
		Aliases: []string{"rm"},
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runDelete(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "workload namespace")
	return cmd
}

func runDelete(ctx context.Context, o *DeleteOptions) error {
	c, err := client(o.Factory)
	if err != nil {
		return err
	}
	err = models.Delete(ctx, c, o.Factory.KubeconfigPath(), o.Namespace, o.Name)
	if errors.Is(err, models.ErrNoModel) {
		return &cmdutil.ExitError{Code: 1, Err: err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Factory.IOStreams.Out, "model %s deleted from namespace %s\n", o.Name, o.Namespace)
	return nil
}
