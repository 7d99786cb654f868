package lifecycle

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/preflight"
	"github.com/inference-sandbox/sandbox/internal/progress"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"github.com/inference-sandbox/sandbox/manifests"
)

// Probe timeouts: choosing the default profile must not slow `up` down noticeably; the
// upstream preflight may take a little longer because it reads chart indexes.
const (
	profileProbeTimeout = 2 * time.Second
	preflightTimeout    = 10 * time.Second
)

// UpstreamTargets are what the upstream profile fetches: every chart repository (which must
// list the pinned version), every registry of an OCI chart or pinned image (the quick profile
// probe uses only these), every OCI chart and pinned image by tag, and the Inference
// Extension's release manifest. The images the charts themselves name are only known once the
// charts are downloaded; `up` pulls those before creating the cluster too.
func UpstreamTargets() []preflight.Target {
	var targets, tagged []preflight.Target
	var refs []string
	for _, c := range addons.UpstreamCharts() {
		if c.Repo == "" {
			refs = append(refs, c.Chart)
			tagged = append(tagged, preflight.Target{Kind: preflight.Image, URL: c.Chart, Version: c.Version})
			continue
		}
		targets = append(targets, preflight.Target{Kind: preflight.ChartRepo, URL: c.Repo, Chart: c.Chart, Version: c.Version})
	}
	for _, img := range versions.UpstreamImages() {
		refs = append(refs, img)
		tagged = append(tagged, preflight.Target{Kind: preflight.Image, URL: img})
	}
	targets = append(targets, preflight.RegistryTargets(refs)...)
	targets = append(targets, tagged...)
	return append(targets, preflight.Target{Kind: preflight.File, URL: versions.InferenceExtensionCRDs})
}

// Prober decides --profile when it is not given and checks the upstream profile before `up`
// creates anything. Tests point it at loopback servers.
type Prober struct {
	Client *http.Client
	// Targets default to UpstreamTargets.
	Targets []preflight.Target
}

func (p Prober) targets() []preflight.Target {
	if p.Targets != nil {
		return p.Targets
	}
	return UpstreamTargets()
}

// ChooseProfile is upstream when every registry the upstream profile pulls from answers
// within a short timeout, offline otherwise; the reason is for the line `up` prints.
func (p Prober) ChooseProfile(ctx context.Context) (profile, why string) {
	var registries []preflight.Target
	for _, t := range p.targets() {
		if t.Kind == preflight.Registry {
			registries = append(registries, t)
		}
	}
	if len(registries) == 0 {
		return ProfileOffline, "no registry to probe"
	}
	failed := preflight.Check(ctx, p.Client, registries, profileProbeTimeout)
	if len(failed) > 0 {
		return ProfileOffline, fmt.Sprintf("%s unreachable", failed[0].Target)
	}
	return ProfileUpstream, "its registries answer"
}

// Preflight checks that every chart and image source of the upstream profile answers.
func (p Prober) Preflight(ctx context.Context) error {
	return preflight.Error(preflight.Check(ctx, p.Client, p.targets(), preflightTimeout))
}

// resolveProfile fills in --profile when it was not given and says which profile `up` uses.
func resolveProfile(ctx context.Context, o *Options) {
	if o.Profile != "" {
		o.Status.Infof("profile: %s (--profile)", o.Profile)
		return
	}
	profile, why := o.Prober.ChooseProfile(ctx)
	o.Profile = profile
	other := ProfileUpstream
	if profile == ProfileUpstream {
		other = ProfileOffline
	}
	o.Status.Infof("profile: %s (%s; --profile %s to choose the other)", profile, why, other)
}

// pullUpstreamImages fetches the charts, renders them to learn their images, and pulls every
// image once on the host, before any cluster exists; kind then copies them into all nodes, so
// no node pulls anything itself.
func pullUpstreamImages(ctx context.Context, s *progress.Status, v addons.Values) ([]string, error) {
	images, err := addons.UpstreamImages(ctx, v)
	if err != nil {
		return nil, err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for _, img := range images {
		g.Go(func() error {
			if exec.CommandContext(ctx, "docker", "image", "inspect", img).Run() == nil {
				return nil
			}
			out, err := exec.CommandContext(ctx, "docker", "pull", "--quiet", img).CombinedOutput()
			if err != nil {
				return fmt.Errorf("docker pull %s: %w: %s", img, err, strings.TrimSpace(string(out)))
			}
			s.Infof("pulled %s", img)
			return nil
		})
	}
	return images, g.Wait()
}

// upstreamWorkloads installs the default namespace's harness and models on Istio: the same
// charts as offline, in istio mode.
func upstreamWorkloads(ctx context.Context, s *progress.Status, client *kube.Client, o Options, res *Result) error {
	hc := &helm.Client{Kubeconfig: o.Kubeconfig}
	res.Namespace = models.DefaultNamespace
	step := s.Start("Installing the serving harness of namespace %s on Istio (Gateway, ext_authz and BBR filters, catch-all route, API key)", res.Namespace)
	err := func() error {
		chrt, err := helm.LoadChart(manifests.Charts, "modelharness")
		if err != nil {
			return err
		}
		values := addons.UpstreamHarnessValues(res.Namespace, cluster.GatewayNodePort)
		if _, err := hc.Apply(ctx, models.HarnessRelease, res.Namespace, chrt, values, 0); err != nil {
			return err
		}
		return models.WaitHarness(ctx, client, res.Namespace, 5*time.Minute)
	}()
	if err := step.End(err); err != nil {
		return err
	}
	if key, err := models.APIKey(ctx, client, res.Namespace); err == nil {
		res.APIKey = key
	}
	if o.Models != "default" {
		return nil
	}
	step = s.Start("Deploying the default models on KAITO (llm-d-inference-sim in an InferenceSet pod template)")
	chrt, err := helm.LoadChart(manifests.Charts, models.DeploymentChart)
	if err != nil {
		return step.End(err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, m := range models.DefaultModels(res.Namespace, "", o.Kubeconfig) {
		g.Go(func() error {
			values := addons.UpstreamModelValues(m.Name, m.Namespace, m.Preset, m.Replicas, m.MinReplicas, m.MaxReplicas)
			if _, err := hc.Apply(gctx, m.Name, m.Namespace, chrt, values, 4*time.Minute); err != nil {
				return err
			}
			return waitServing(gctx, client, m.Namespace, m.Name, 4*time.Minute)
		})
	}
	return step.End(g.Wait())
}

// waitServing waits for a model's first replica: KAITO's pod of the InferenceSet is Ready.
func waitServing(ctx context.Context, c *kube.Client, namespace, name string, timeout time.Duration) error {
	sel := "inferenceset.kaito.sh/created-by=" + name
	return kube.WaitFor(ctx, timeout, 2*time.Second, "model "+name, func(ctx context.Context) (bool, string, error) {
		pods, err := c.Clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err.Error(), nil
		}
		for i := range pods.Items {
			if kube.PodProblem(&pods.Items[i]) == "" {
				return true, "", nil
			}
		}
		if len(pods.Items) == 0 {
			return false, "KAITO has created no pod yet (" + sel + ")", nil
		}
		return false, kube.PodProblem(&pods.Items[0]), nil
	})
}
