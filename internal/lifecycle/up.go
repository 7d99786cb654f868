// Package lifecycle brings a whole sandbox up and down. `up` is a list of steps run in
// order — engine check, egress guard, node image, component image, cluster, image loading,
// addons — each idempotent, so running it again repairs what is missing and changes nothing
// else. The e2e suite calls the same code.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/egress"
	"github.com/inference-sandbox/sandbox/internal/images"
	"github.com/inference-sandbox/sandbox/internal/keda"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/nodeimage"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// Profiles.
const (
	ProfileOffline  = "offline"
	ProfileUpstream = "upstream"
)

// Scaling presets.
const (
	ScalingFast     = "fast"
	ScalingUpstream = "upstream"
)

// Options of `up`.
type Options struct {
	Name        string
	Profile     string
	Workers     int
	GPUsPerNode int
	Models      string
	// Kubeconfig is where the cluster's kubeconfig is written.
	Kubeconfig string
	// NodeImage overrides the node image (default: build or reuse the offline one).
	NodeImage string
	// Stackd is the path of the stackd binary (default: found next to sandbox).
	Stackd string
	// GatewayPort is the host port of the gateway on 127.0.0.1 (0: 30080 if free, else any).
	GatewayPort int
	// RetainOnFailure keeps the node containers of a failed create for debugging.
	RetainOnFailure bool
	// Scaling is the autoscaling preset: fast (a demo scales in well under a minute) or
	// upstream (keda-kaito-scaler's own timings).
	Scaling string
	Status  *progress.Status
	// Prober chooses the profile when Profile is empty and checks the upstream profile's
	// sources before anything is created.
	Prober Prober
}

// Result is what `up` made, for the final summary and for tests.
type Result struct {
	Created     bool
	NodeImage   string
	StackdImage string
	KEDAImage   string
	Kubeconfig  string
	GatewayURL  string
	Namespace   string
	APIKey      string
	Duration    time.Duration
}

var validName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate checks options before anything is touched.
func (o *Options) Validate() error {
	if !validName.MatchString(o.Name) || len(o.Name) > 40 {
		return fmt.Errorf("--name %q: use lowercase letters, digits and '-', at most 40 characters", o.Name)
	}
	switch o.Profile {
	case "", ProfileOffline, ProfileUpstream: // "": upstream when its registries answer
	default:
		return fmt.Errorf("--profile %q: must be offline or upstream", o.Profile)
	}
	if o.Workers < 1 || o.Workers > 8 {
		return fmt.Errorf("--workers %d: must be between 1 and 8", o.Workers)
	}
	if o.GPUsPerNode < 1 || o.GPUsPerNode > 64 {
		return fmt.Errorf("--gpus-per-node %d: must be between 1 and 64", o.GPUsPerNode)
	}
	switch o.Models {
	case "default", "none":
	default:
		return fmt.Errorf("--models %q: must be default or none", o.Models)
	}
	switch o.Scaling {
	case "", ScalingFast, ScalingUpstream:
	default:
		return fmt.Errorf("--scaling %q: must be fast or upstream", o.Scaling)
	}
	if o.GatewayPort < 0 || o.GatewayPort > 65535 {
		return fmt.Errorf("--gateway-port %d: not a port", o.GatewayPort)
	}
	if o.Kubeconfig == "" {
		return errors.New("no kubeconfig path")
	}
	return nil
}

// Up creates or repairs the sandbox.
func Up(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Status == nil {
		o.Status = progress.Discard()
	}
	start := time.Now()
	res := &Result{Kubeconfig: o.Kubeconfig}
	resolveProfile(ctx, &o)
	// Before anything is created (not even the egress guard's lock): the upstream profile
	// fails here, in one line, on a machine that cannot fetch its charts and images.
	if o.Profile == ProfileUpstream {
		step := o.Status.Start("Checking that the upstream charts and images can be fetched")
		if err := step.End(o.Prober.Preflight(ctx)); err != nil {
			return nil, err
		}
	}
	// Held until the nodes exist, so a concurrent `down` of another sandbox cannot remove the
	// guard from under this one (see egress.LockPath).
	guardLock, err := egress.HoldShared()
	if err != nil {
		return nil, fmt.Errorf("egress guard lock: %w", err)
	}
	defer guardLock.Release()
	s := o.Status

	steps := []struct {
		name string
		run  func() error
	}{
		{"Checking the container engine", func() error { return cluster.Preflight(ctx) }},
		{"Installing the egress guard (no packet from the cluster leaves this machine)", func() error {
			return egress.New().Ensure(ctx)
		}},
		{"Preparing the component image", func() error {
			bin, err := images.FindStackd(o.Stackd)
			if err != nil {
				return err
			}
			image, built, err := images.EnsureStackd(ctx, bin)
			if err == nil && built {
				s.Infof("built %s from %s", image, bin)
			}
			res.StackdImage = image
			return err
		}},
	}
	for _, st := range steps {
		if err := s.Start("%s", st.name).End(st.run()); err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
	}

	values := addons.Values{
		SystemNamespace: addons.DefaultSystemNamespace,
		StackdImage:     res.StackdImage,
		GPUsPerNode:     o.GPUsPerNode,
		ScalerTiming:    o.Scaling,
		ClusterName:     o.Name,
		Kubeconfig:      o.Kubeconfig,
		ChartCache:      addons.DefaultChartCache(),
	}
	// The images to copy into the nodes: offline, the stackd and KEDA images built here;
	// upstream, the stackd image (the mocker) and every upstream image, pulled once on the host.
	load := []string{res.StackdImage}
	if o.Profile == ProfileUpstream {
		step := s.Start("Fetching the upstream charts and pulling their images on the host")
		images, err := pullUpstreamImages(ctx, s, values)
		if err := step.End(err); err != nil {
			return nil, err
		}
		load = append(load, images...)
	} else {
		// KEDA is built from its Go module; its build reports its own stages.
		kedaImage, err := keda.Ensure(ctx, keda.BuildOptions{Status: s})
		if err != nil {
			return nil, fmt.Errorf("KEDA image: %w", err)
		}
		res.KEDAImage = kedaImage
		values.KEDAImage = kedaImage
		load = append(load, kedaImage)
	}

	// The node image reports its own stages.
	res.NodeImage = o.NodeImage
	if res.NodeImage == "" {
		image, err := nodeimage.Build(ctx, nodeimage.Options{Status: s})
		if err != nil {
			return nil, err
		}
		res.NodeImage = image
	}

	mgr := cluster.New(s)
	step := s.Start("Creating or reusing cluster %q (1 control-plane, %d workers)", o.Name, o.Workers)
	created, err := mgr.Ensure(ctx, cluster.Spec{
		Name: o.Name, Workers: o.Workers, NodeImage: res.NodeImage,
		GatewayPort: o.GatewayPort, Kubeconfig: o.Kubeconfig, Retain: o.RetainOnFailure,
	})
	if err := step.End(err); err != nil {
		return nil, err
	}
	res.Created = created

	client, err := kube.New(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	step = s.Start("Waiting for %d nodes to be Ready", o.Workers+1)
	if err := step.End(client.WaitNodesReady(ctx, o.Workers+1, 4*time.Minute)); err != nil {
		return nil, err
	}
	for _, image := range load {
		step = s.Start("Loading %s into the nodes", image)
		loaded, err := mgr.LoadImage(ctx, o.Name, image)
		if err := step.End(err); err != nil {
			return nil, err
		}
		if len(loaded) > 0 {
			s.Infof("loaded into %v", loaded)
		}
	}
	if o.Scaling == "" {
		o.Scaling = ScalingFast
	}
	if o.Scaling == ScalingFast && o.Profile == ProfileOffline {
		s.Infof("scaling preset: fast (short polling and cooldowns so a demo scales within a minute; --scaling upstream for KAITO's timings)")
	}

	values.ScalerTiming = o.Scaling
	env := &addons.Env{Client: client, Status: s, Values: values}
	if o.Profile == ProfileUpstream {
		if err := addons.InstallAll(ctx, env, addons.Upstream()); err != nil {
			return nil, err
		}
		if err := upstreamWorkloads(ctx, s, client, o, res); err != nil {
			return nil, err
		}
		return finish(ctx, mgr, o, res, start), nil
	}
	if err := addons.InstallAll(ctx, env, addons.Offline()); err != nil {
		return nil, err
	}
	res.Namespace = models.DefaultNamespace
	step = s.Start("Installing the serving harness of namespace %s (Gateway, catch-all route, API key)", res.Namespace)
	err = models.EnsureHarness(ctx, client, models.HarnessOptions{
		Namespace: res.Namespace, GatewayClass: "sandbox",
		SystemNamespace: addons.DefaultSystemNamespace, Kubeconfig: o.Kubeconfig,
	})
	if err := step.End(err); err != nil {
		return nil, err
	}
	if key, err := models.APIKey(ctx, client, res.Namespace); err == nil {
		res.APIKey = key
	}
	if o.Models == "default" {
		step = s.Start("Deploying the default models (phi-4-mini, ministral-3b)")
		err := models.EnsureDefaultModels(ctx, client, res.Namespace, res.StackdImage, o.Kubeconfig, 4*time.Minute)
		if err := step.End(err); err != nil {
			return nil, err
		}
	}
	return finish(ctx, mgr, o, res, start), nil
}

func finish(ctx context.Context, mgr *cluster.Manager, o Options, res *Result, start time.Time) *Result {
	if port, err := mgr.GatewayPort(ctx, o.Name); err == nil {
		res.GatewayURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	res.Duration = time.Since(start)
	return res
}
