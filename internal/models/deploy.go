package models

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/plugins"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

// DeploymentChart is the embedded chart of one model.
const DeploymentChart = "modeldeployment"

// InferenceSetGVR is the resource the modeldeployment chart writes.
var InferenceSetGVR = schema.GroupVersionResource{Group: "kaito.sh", Version: "v1alpha1", Resource: "inferencesets"}

// Scaling annotations of keda-kaito-scaler <= v0.5 (shared/facts/kaito-keda-auth-facts.md §3.3).
const (
	annotationAutoProvision = "scaledobject.kaito.sh/auto-provision"
	annotationMinReplicas   = "scaledobject.kaito.sh/min-replicas"
	annotationMaxReplicas   = "scaledobject.kaito.sh/max-replicas"
)

// presets maps the sandbox's model names to KAITO presets (upstream e2e's default models,
// upstream-production-stack.md §5.3).
var presets = map[string]string{
	"phi-4-mini":   "phi-4-mini-instruct",
	"ministral-3b": "ministral-3-3b-instruct",
}

// PresetFor is the preset a model is deployed with when none is given: the known one for the
// default models, otherwise the model name itself.
func PresetFor(name string) string {
	if p, ok := presets[name]; ok {
		return p
	}
	return name
}

// DeployOptions describe one model deployment (one modeldeployment release).
type DeployOptions struct {
	// Name is the model name clients send, the release name and the InferenceSet name.
	Name      string
	Namespace string
	// Preset is the KAITO preset; empty means PresetFor(Name).
	Preset string
	// Replicas is the initial replica count.
	Replicas int
	// MinReplicas and MaxReplicas turn autoscaling on when MaxReplicas > 0.
	MinReplicas, MaxReplicas int
	// LatencyProfile and LatencyCalculator choose the simulator latency model; empty: auto.
	LatencyProfile, LatencyCalculator string
	// SimulatorArgs are extra simulator flags for every replica ("--max-num-seqs 4 ...").
	SimulatorArgs string
	// PickerConfig is an EndpointPickerConfig (YAML) replacing the production scorers; empty:
	// the production stack's.
	PickerConfig string
	// EPPImage is the endpoint picker image (offline: the stackd image). Empty: the image the
	// cluster's InferenceSet controller runs.
	EPPImage string
	// Kubeconfig is the cluster's kubeconfig, for Helm.
	Kubeconfig string
	// Wait, when positive, waits that long for every replica and the picker to be ready.
	Wait time.Duration
}

// Autoscaled reports whether the deployment asks keda-kaito-scaler for a ScaledObject.
func (o DeployOptions) Autoscaled() bool { return o.MaxReplicas > 0 }

// Validate checks the options before anything reaches the cluster.
func (o DeployOptions) Validate() error {
	if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 {
		return fmt.Errorf("model name %q: %s", o.Name, strings.Join(errs, "; "))
	}
	if len(o.Name) > 40 {
		return fmt.Errorf("model name %q is longer than 40 characters (its picker %s-inferencepool-epp must fit in 63)", o.Name, o.Name)
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
	}
	if o.Replicas < 0 {
		return fmt.Errorf("--replicas must not be negative, got %d", o.Replicas)
	}
	if o.PickerConfig != "" {
		// The picker's own loader, so a config it would refuse never reaches the cluster.
		if _, err := scheduling.Load([]byte(o.PickerConfig), plugins.Registry(), scheduling.Handle{Store: datastore.NewStore()}, nil); err != nil {
			return fmt.Errorf("--picker-config: %w", err)
		}
	}
	if o.SimulatorArgs != "" {
		// The controller's own check, on the InferenceSet these options render.
		is := &inferenceset.InferenceSet{}
		is.Name = o.Name
		is.Spec.Template.Inference.Preset = &inferenceset.Preset{Name: cmp.Or(o.Preset, PresetFor(o.Name))}
		is.Annotations = map[string]string{inferenceset.AnnotationSimulatorArgs: o.SimulatorArgs}
		if err := inferenceset.Validate(is); err != nil {
			return fmt.Errorf("--sim-args: %w", err)
		}
	}
	if !o.Autoscaled() {
		if o.MinReplicas != 0 {
			return fmt.Errorf("--min-replicas needs --max-replicas: autoscaling is on only with both")
		}
		return nil
	}
	lo := max(o.MinReplicas, 1)
	switch {
	case o.MaxReplicas < 2:
		// keda-kaito-scaler silently ignores max-replicas <= 1 (facts §3.3).
		return fmt.Errorf("--max-replicas must be at least 2 to autoscale, got %d (omit it for a fixed replica count)", o.MaxReplicas)
	case o.MaxReplicas < lo:
		return fmt.Errorf("--max-replicas (%d) must be at least --min-replicas (%d)", o.MaxReplicas, lo)
	case o.Replicas < lo || o.Replicas > o.MaxReplicas:
		return fmt.Errorf("--replicas (%d) must lie between --min-replicas (%d) and --max-replicas (%d)", o.Replicas, lo, o.MaxReplicas)
	}
	return nil
}

// chartValues are the modeldeployment values for o.
func chartValues(o DeployOptions) map[string]any {
	preset := o.Preset
	if preset == "" {
		preset = PresetFor(o.Name)
	}
	v := map[string]any{
		"name":              o.Name,
		"namespace":         o.Namespace,
		"model":             preset,
		"replicas":          o.Replicas,
		"latencyProfile":    o.LatencyProfile,
		"latencyCalculator": o.LatencyCalculator,
		"simulatorArgs":     o.SimulatorArgs,
		"enableScaling":     o.Autoscaled(),
		"epp":               map[string]any{"image": map[string]any{"repository": o.EPPImage}, "pluginsConfig": o.PickerConfig},
	}
	if o.Autoscaled() {
		v["minReplicas"] = max(o.MinReplicas, 1)
		v["maxReplicas"] = o.MaxReplicas
	}
	return v
}

// Deploy installs or upgrades the model's modeldeployment release; with o.Wait it then waits
// for the model to serve. The namespace's harness (Gateway, API key) must exist: EnsureHarness.
func Deploy(ctx context.Context, c *kube.Client, o DeployOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.EPPImage == "" {
		img, err := StackdImage(ctx, c, "")
		if err != nil {
			return err
		}
		o.EPPImage = img
	}
	chrt, err := helm.LoadChart(manifests.Charts, DeploymentChart)
	if err != nil {
		return err
	}
	values := chartValues(o)
	hc := &helm.Client{Kubeconfig: o.Kubeconfig}
	unchanged, err := releaseCurrent(hc, chrt, o.Name, o.Namespace, values)
	if err != nil {
		return err
	}
	// An unchanged model is left alone, so a repeated `up` writes no new release revision.
	if !unchanged {
		if _, err := hc.Apply(ctx, o.Name, o.Namespace, chrt, values, 0); err != nil {
			return fmt.Errorf("deploying model %s: %w", o.Name, err)
		}
	}
	if o.Wait > 0 {
		return WaitReady(ctx, c, o.Namespace, o.Name, o.Wait)
	}
	return nil
}

// releaseCurrent reports whether the deployed release already holds exactly what values render.
func releaseCurrent(hc *helm.Client, chrt *chart.Chart, name, namespace string, values map[string]any) (bool, error) {
	rel, err := hc.Get(name, namespace)
	if err != nil {
		return false, fmt.Errorf("reading release %s/%s: %w", namespace, name, err)
	}
	if rel == nil || rel.Info == nil || rel.Info.Status != release.StatusDeployed {
		return false, nil
	}
	want, err := helm.Render(chrt, name, namespace, values)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(want) == strings.TrimSpace(rel.Manifest), nil
}

// ControllerDeployment is the InferenceSet controller of the offline profile; model pods and
// pickers run the same stackd image it does.
const ControllerDeployment = "inferenceset-controller"

// SystemNamespace holds the offline components (addons.DefaultSystemNamespace).
const SystemNamespace = "sandbox-system"

// StackdImage returns the stackd image the cluster's InferenceSet controller runs, which is
// loaded on every node. An empty systemNamespace means SystemNamespace.
func StackdImage(ctx context.Context, c *kube.Client, systemNamespace string) (string, error) {
	if systemNamespace == "" {
		systemNamespace = SystemNamespace
	}
	d, err := c.Clientset.AppsV1().Deployments(systemNamespace).Get(ctx, ControllerDeployment, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("finding the stackd image from Deployment %s/%s: %w (is the sandbox up? run `sandbox up`)", systemNamespace, ControllerDeployment, err)
	}
	for _, ct := range d.Spec.Template.Spec.Containers {
		if ct.Image != "" {
			return ct.Image, nil
		}
	}
	return "", fmt.Errorf("Deployment %s/%s names no image", systemNamespace, ControllerDeployment)
}

// ErrUnschedulable is returned by WaitReady when every replica that can run is ready and the
// rest cannot be scheduled (typically: not enough free fake GPUs); waiting longer would not help.
var ErrUnschedulable = errors.New("replicas cannot be scheduled")

// WaitReady waits until every replica of the model is ready and its endpoint picker serves.
func WaitReady(ctx context.Context, c *kube.Client, namespace, name string, timeout time.Duration) error {
	epp := name + "-inferencepool-epp"
	var stuck error
	err := kube.WaitFor(ctx, timeout, time.Second, "model "+namespace+"/"+name, func(ctx context.Context) (bool, string, error) {
		d, err := c.Clientset.AppsV1().Deployments(namespace).Get(ctx, epp, metav1.GetOptions{})
		if err != nil {
			return false, "endpoint picker: " + err.Error(), nil
		}
		if ok, why := kube.DeploymentReady(d); !ok {
			return false, "endpoint picker " + epp + ": " + why, nil
		}
		m, err := getModel(ctx, c, namespace, name)
		if err != nil {
			return false, err.Error(), nil
		}
		if m.Ready {
			return true, "", nil
		}
		n, why, err := unschedulable(ctx, c, namespace, name)
		if err != nil {
			return false, err.Error(), nil
		}
		if n > 0 && int(m.ReadyReplicas)+n >= int(m.Replicas) {
			stuck = fmt.Errorf("model %s/%s: %d/%d replicas ready, %w: %d (%s); free fake GPUs (delete a model) or deploy fewer replicas",
				namespace, name, m.ReadyReplicas, m.Replicas, ErrUnschedulable, n, why)
			return true, "", nil
		}
		return false, m.Message, nil
	})
	if err != nil {
		return fmt.Errorf("%w (see `kubectl -n %s describe inferenceset %s`)", err, namespace, name)
	}
	return stuck
}

// unschedulable counts the model's pods the scheduler has turned down, with the first reason.
func unschedulable(ctx context.Context, c *kube.Client, namespace, name string) (int, string, error) {
	pods, err := c.Clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: inferenceset.Selector(name)})
	if err != nil {
		return 0, "", fmt.Errorf("listing pods of model %s/%s: %w", namespace, name, err)
	}
	n, why := 0, ""
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				n++
				if why == "" {
					why, _, _ = strings.Cut(cond.Message, ". ")
				}
			}
		}
	}
	return n, why, nil
}

// Model is one deployed model as `model list` shows it.
type Model struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Preset    string `json:"preset"`
	// Replicas is the desired count (spec.replicas, which the autoscaler moves).
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
	Autoscaled    bool  `json:"autoscaled"`
	MinReplicas   int   `json:"minReplicas,omitempty"`
	MaxReplicas   int   `json:"maxReplicas,omitempty"`
	Ready         bool  `json:"ready"`
	// Message says why the model is not ready (e.g. pods Pending for want of fake GPUs).
	Message string `json:"message,omitempty"`
	// Endpoint is the gateway base URL that serves the model (send "model": Name).
	Endpoint string `json:"endpoint,omitempty"`
}

func modelFrom(is *inferenceset.InferenceSet) Model {
	m := Model{
		Name: is.Name, Namespace: is.Namespace,
		Replicas: is.DesiredReplicas(), ReadyReplicas: is.Status.ReadyReplicas,
		Autoscaled: is.Annotations[annotationAutoProvision] == "true",
	}
	if p := is.Spec.Template.Inference.Preset; p != nil {
		m.Preset = p.Name
	}
	if m.Autoscaled {
		m.MinReplicas, _ = strconv.Atoi(is.Annotations[annotationMinReplicas])
		m.MaxReplicas, _ = strconv.Atoi(is.Annotations[annotationMaxReplicas])
	}
	cond := meta.FindStatusCondition(is.Status.Conditions, inferenceset.ConditionReady)
	switch {
	case cond == nil || cond.ObservedGeneration < is.Generation:
		m.Message = "waiting for the InferenceSet controller"
	case cond.Status == metav1.ConditionTrue:
		m.Ready = true
	default:
		m.Message = cond.Message
	}
	return m
}

func getModel(ctx context.Context, c *kube.Client, namespace, name string) (Model, error) {
	u, err := c.Dynamic.Resource(InferenceSetGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Model{}, fmt.Errorf("no model %s in namespace %s", name, namespace)
	}
	if err != nil {
		return Model{}, fmt.Errorf("reading InferenceSet %s/%s: %w", namespace, name, err)
	}
	var is inferenceset.InferenceSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return Model{}, fmt.Errorf("decoding InferenceSet %s/%s: %w", namespace, name, err)
	}
	return modelFrom(&is), nil
}

// ListOptions select the models to list.
type ListOptions struct {
	// Namespace to list; empty lists every namespace.
	Namespace string
	// BaseURL is the gateway URL reachable from this machine for Namespace; without it the
	// endpoint is the Gateway's in-cluster address.
	BaseURL string
}

// List returns the models (InferenceSets) with their desired and ready replicas, by
// namespace and name.
func List(ctx context.Context, c *kube.Client, o ListOptions) ([]Model, error) {
	l, err := c.Dynamic.Resource(InferenceSetGVR).Namespace(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the cluster has no InferenceSet API: is the sandbox up? run `sandbox up`")
		}
		return nil, fmt.Errorf("listing InferenceSets: %w", err)
	}
	gateways := map[string]string{}
	var out []Model
	for _, u := range l.Items {
		var is inferenceset.InferenceSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
			return nil, fmt.Errorf("decoding InferenceSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		m := modelFrom(&is)
		if o.BaseURL != "" && (o.Namespace == "" || o.Namespace == m.Namespace) && m.Namespace == DefaultNamespace {
			m.Endpoint = o.BaseURL
		} else {
			ep, ok := gateways[m.Namespace]
			if !ok {
				ep = gatewayAddress(ctx, c, m.Namespace)
				gateways[m.Namespace] = ep
			}
			m.Endpoint = ep
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Model) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out, nil
}

// gatewayAddress is the in-cluster URL of the namespace's Gateway, or "" before it has one.
func gatewayAddress(ctx context.Context, c *kube.Client, namespace string) string {
	gw, err := c.Dynamic.Resource(gatewayGVR).Namespace(namespace).Get(ctx, GatewayName(namespace), metav1.GetOptions{})
	if err != nil {
		return ""
	}
	addrs, _, _ := unstructured.NestedSlice(gw.Object, "status", "addresses")
	for _, a := range addrs {
		if m, ok := a.(map[string]any); ok {
			if v, _ := m["value"].(string); v != "" {
				return "http://" + v
			}
		}
	}
	return ""
}

// ErrNoModel is returned by Delete for a model that is not deployed.
var ErrNoModel = errors.New("no such model")

// Delete uninstalls the model's release; its replicas drain and go with the InferenceSet.
func Delete(ctx context.Context, c *kube.Client, kubeconfig, namespace, name string) error {
	hc := &helm.Client{Kubeconfig: kubeconfig}
	rel, err := hc.Get(name, namespace)
	if err != nil {
		return fmt.Errorf("reading release %s/%s: %w", namespace, name, err)
	}
	if rel == nil || rel.Chart == nil || rel.Chart.Name() != DeploymentChart {
		return fmt.Errorf("%w: %s in namespace %s (see `sandbox model list`)", ErrNoModel, name, namespace)
	}
	return hc.Uninstall(name, namespace, 0)
}

// Default models that `up` deploys unless --models none: upstream e2e's two small models, one
// replica each, autoscaled between 1 and 4.
func DefaultModels(namespace, eppImage, kubeconfig string) []DeployOptions {
	var out []DeployOptions
	for _, name := range []string{"phi-4-mini", "ministral-3b"} {
		out = append(out, DeployOptions{
			Name: name, Namespace: namespace, Preset: PresetFor(name),
			Replicas: 1, MinReplicas: 1, MaxReplicas: 4,
			EPPImage: eppImage, Kubeconfig: kubeconfig,
		})
	}
	return out
}

// EnsureDefaultModels deploys the default models into namespace (whose harness must exist)
// and waits up to wait for them to serve. It is safe to run again: the releases are upgraded
// in place, and a replica count the autoscaler changed is kept.
func EnsureDefaultModels(ctx context.Context, c *kube.Client, namespace, eppImage, kubeconfig string, wait time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, o := range DefaultModels(namespace, eppImage, kubeconfig) {
		g.Go(func() error {
			if cur, err := getModel(gctx, c, o.Namespace, o.Name); err == nil && cur.Autoscaled &&
				int(cur.Replicas) >= o.MinReplicas && int(cur.Replicas) <= o.MaxReplicas {
				o.Replicas = int(cur.Replicas)
			}
			o.Wait = wait
			return Deploy(gctx, c, o)
		})
	}
	return g.Wait()
}

// HarnessInstalled reports whether the namespace has its Gateway, which every model route
// attaches to.
func HarnessInstalled(ctx context.Context, c *kube.Client, namespace string) (bool, error) {
	_, err := c.Dynamic.Resource(gatewayGVR).Namespace(namespace).Get(ctx, GatewayName(namespace), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Gateway %s/%s: %w", namespace, GatewayName(namespace), err)
	}
	return true, nil
}
