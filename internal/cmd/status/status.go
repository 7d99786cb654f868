// Package status implements `sandbox status`.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/egress"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/observe"
)

// Options of `status`.
type Options struct {
	Output string
}

// components are the Deployments that make up a sandbox of the given profile.
func components(profile string) []observe.ComponentRef {
	list, class := addons.Components(addons.DefaultSystemNamespace), "sandbox"
	if profile == profileUpstream {
		list, class = addons.UpstreamComponents(addons.DefaultSystemNamespace), "istio"
	}
	var refs []observe.ComponentRef
	for _, c := range list {
		refs = append(refs, observe.ComponentRef{Name: c.Name, Namespace: c.Namespace, Deployment: c.Deployment})
	}
	// The data plane the gateway class's controller runs for the default namespace's Gateway
	// (both name it <gateway>-<class>).
	gw := models.GatewayName(models.DefaultNamespace)
	return append(refs, observe.ComponentRef{Name: "gateway " + gw, Namespace: models.DefaultNamespace, Deployment: gw + "-" + class})
}

const (
	profileOffline  = "offline"
	profileUpstream = "upstream"
)

// profileOf tells the profile a running sandbox was brought up with: only the upstream one
// runs istiod.
func profileOf(ctx context.Context, cs kubernetes.Interface) (string, error) {
	_, err := cs.AppsV1().Deployments(addons.IstioNamespace).Get(ctx, "istiod", metav1.GetOptions{})
	switch {
	case err == nil:
		return profileUpstream, nil
	case apierrors.IsNotFound(err):
		return profileOffline, nil
	default:
		return "", fmt.Errorf("looking for istiod: %w", err)
	}
}

// NewCmd returns `sandbox status`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show nodes, fake GPUs and components: ready or not, and why",
		Long: `Show every node (with its fake GPUs), every sandbox component and the egress guard,
each ready or not with the reason. Exits 1 when something is not ready, so scripts can
wait on it.`,
		Example: `  sandbox status
  sandbox status -o json | jq '.nodes[] | {name, gpus}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Output != "" && opts.Output != "json" && opts.Output != "table" {
				return fmt.Errorf("-o %q: must be json or table", opts.Output)
			}
			st, err := collect(cmd.Context(), f)
			if err != nil {
				return err
			}
			if opts.Output == "json" {
				enc := json.NewEncoder(f.IOStreams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printTable(f.IOStreams.Out, st)
			}
			if !st.Ready {
				return &cmdutil.ExitError{Code: 1, Err: cmdutil.ErrSilent}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "output format: table (default) or json")
	return cmd
}

func collect(ctx context.Context, f *cmdutil.Factory) (*observe.Status, error) {
	path := f.KubeconfigPath()
	client, err := kube.New(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", f.Name, err)
	}
	profile, err := profileOf(ctx, client.Clientset)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q is not reachable: %w (run `sandbox up` to repair it)", f.Name, err)
	}
	st, err := observe.Collect(ctx, client, components(profile))
	if err != nil {
		return nil, fmt.Errorf("sandbox %q is not reachable: %w (run `sandbox up` to repair it)", f.Name, err)
	}
	st.Name, st.Kubeconfig, st.Profile = f.Name, path, profile
	list, err := models.List(ctx, client, models.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing models: %w", err)
	}
	for _, m := range list {
		st.Models = append(st.Models, observe.Model{Name: m.Name, Namespace: m.Namespace, Replicas: m.Replicas,
			ReadyReplicas: m.ReadyReplicas, Ready: m.Ready, Reason: st.ModelReason(m.Namespace, m.Name, m.Message)})
		if !m.Ready {
			st.Ready = false
		}
	}
	if err := egress.New().Check(ctx); err != nil {
		st.EgressGuard = observe.Check{Reason: err.Error() + " (run `sandbox up` to reinstall it)"}
		st.Ready = false
	} else {
		st.EgressGuard = observe.Check{OK: true}
	}
	return st, nil
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func printTable(w io.Writer, st *observe.Status) {
	fmt.Fprintf(w, "sandbox %q, %s profile\n\n", st.Name, st.Profile)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tROLE\tREADY\tGPUS (USED/TOTAL)\tGPU\tWHY\n")
	for _, n := range st.Nodes {
		gpus := "-"
		if n.Role == "worker" || n.GPUs > 0 {
			gpus = fmt.Sprintf("%d/%d", n.GPUsUsed, n.GPUs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, yesNo(n.Ready), gpus, dash(n.Product), n.Reason)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintf(tw, "COMPONENT\tNAMESPACE\tREADY\tWHY\t\t\n")
	for _, c := range st.Components {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\n", c.Name, c.Namespace, yesNo(c.Ready), c.Reason)
	}
	fmt.Fprintf(tw, "egress-guard\thost\t%s\t%s\t\t\n", yesNo(st.EgressGuard.OK), st.EgressGuard.Reason)
	if len(st.Models) > 0 {
		fmt.Fprintln(tw, "\t\t\t\t\t")
		fmt.Fprintf(tw, "MODEL\tNAMESPACE\tREADY\tREPLICAS (READY/DESIRED)\tWHY\t\n")
		for _, m := range st.Models {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t\n", m.Name, m.Namespace, yesNo(m.Ready), m.ReadyReplicas, m.Replicas, m.Reason)
		}
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
