package addons

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"github.com/inference-sandbox/sandbox/manifests"
)

// Namespaces of the upstream profile, as the production stack installs it
// (shared/facts/upstream-production-stack.md §3.2-3.3).
const (
	IstioNamespace        = "istio-system"
	KAITONamespace        = "kaito-system"
	AuthNamespace         = "llm-gateway-auth"
	UpstreamKEDANamespace = "keda"
)

// UpstreamChart is one chart the upstream profile installs from its Helm repository or OCI
// registry at install time.
type UpstreamChart struct {
	Release   string
	Namespace string
	// Chart is the chart name in Repo, or a full oci:// reference when Repo is empty.
	Chart   string
	Repo    string
	Version string
	// Values are the --set values of the install, from the catalogue's values.
	Values func(v Values) map[string]any
}

// Ref is how the chart is named in messages: repo/chart@version.
func (c UpstreamChart) Ref() string {
	if c.Repo == "" {
		return c.Chart + ":" + c.Version
	}
	return strings.TrimSuffix(c.Repo, "/") + "/" + c.Chart + "@" + c.Version
}

// The charts, by name, so the catalogue, the preflight and the tests share one definition.
var (
	IstioBaseChart = UpstreamChart{
		Release: "istio-base", Namespace: IstioNamespace, Chart: "base", Repo: versions.IstioChartRepo, Version: versions.Istio,
		Values: func(Values) map[string]any {
			return map[string]any{"defaultRevision": "default"}
		},
	}
	IstiodChart = UpstreamChart{
		Release: "istiod", Namespace: IstioNamespace, Chart: "istiod", Repo: versions.IstioChartRepo, Version: versions.Istio,
		Values: func(Values) map[string]any {
			return map[string]any{
				"global": map[string]any{"hub": versions.IstioHub, "tag": versions.Istio},
				"pilot": map[string]any{
					// Istio only programs InferencePool backends (the EPP's ext_proc) with this on
					// (facts §7.4).
					"env":              map[string]any{"ENABLE_GATEWAY_API_INFERENCE_EXTENSION": "true"},
					"autoscaleEnabled": false,
					// Two shared cores: istiod's default 500m/2Gi request would not schedule.
					"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "256Mi"}},
				},
			}
		},
	}
	KAITOChart = UpstreamChart{
		Release: "kaito-workspace", Namespace: KAITONamespace, Chart: "workspace", Repo: versions.KAITOChartRepo, Version: versions.KAITO,
		Values: func(v Values) map[string]any {
			return map[string]any{
				"clusterName": v.ClusterName,
				// BYO: KAITO provisions no nodes; an InferenceSet's labelSelector (the mocker's
				// accelerator=nvidia) picks the fake GPU workers. v0.11+ ignores the old gate
				// alone (kaito-keda-auth facts §1.5).
				"nodeProvisioner": "byo",
				"featureGates": map[string]any{
					"enableInferenceSetController": true,
					// modeldeployment renders the InferencePool and picker itself; KAITO's own
					// would be a second pair with the same names (facts §1.10).
					"gatewayAPIInferenceExtension": false,
				},
				// Neither schedules on kind (facts §1.7).
				// Preloaded into the nodes; with the egress guard on, a node cannot pull.
				"image":              map[string]any{"pullPolicy": "IfNotPresent"},
				"localCSIDriver":     map[string]any{"useLocalCSIDriver": false},
				"nvidiaDevicePlugin": map[string]any{"enabled": false},
			}
		},
	}
	BBRChart = UpstreamChart{
		Release: "body-based-router", Namespace: KAITONamespace, Chart: versions.BBRChart, Version: versions.InferenceExtension,
		Values: func(Values) map[string]any {
			// No provider: only the Deployment, Service and RBAC. Each namespace's modelharness
			// inserts the ext_proc filter itself, just before the picker's (facts §1.5, §7.1),
			// and originates the TLS the router serves (its chart cannot turn TLS off: the flags
			// map renders `--secure-serving "false"`, which the binary's pflag reads as true).
			return map[string]any{
				"provider": map[string]any{"name": "none"},
				// The chart's default is Always; the image is preloaded and nodes cannot pull.
				"bbr": map[string]any{"image": map[string]any{"pullPolicy": "IfNotPresent"}},
			}
		},
	}
	AuthChart = UpstreamChart{
		Release: "llm-gateway-apikey", Namespace: AuthNamespace, Chart: versions.LLMGatewayAuthChart, Version: versions.LLMGatewayAuth,
		Values: func(Values) map[string]any {
			return map[string]any{
				"namespaceOverride": AuthNamespace,
				"crds":              map[string]any{"install": true},
				"istio": map[string]any{
					"enabled":          true,
					"strictMTLS":       false,
					"gatewayNamespace": AuthNamespace,
					// The chart's cluster-wide ext_authz filter would select nothing useful; each
					// modelharness wires its own gateway, so point it at a label no pod has
					// (facts §3.3).
					"gatewaySelector": map[string]any{"kaito.sh/cluster-wide-ext-authz-disabled": "true"},
				},
			}
		},
	}
	KEDAChart = UpstreamChart{
		Release: "keda", Namespace: UpstreamKEDANamespace, Chart: "keda", Repo: versions.KEDAChartRepo, Version: versions.KEDAChart,
		Values: func(Values) map[string]any {
			// One pull policy for all three components; the chart's default is Always.
			return map[string]any{"image": map[string]any{"pullPolicy": "IfNotPresent"}}
		},
	}
	ScalerChart = UpstreamChart{
		// keda-kaito-scaler manages a ClusterTriggerAuthentication, so it lives with KEDA.
		Release: "keda-kaito-scaler", Namespace: UpstreamKEDANamespace, Chart: "keda-kaito-scaler", Repo: versions.KEDAKaitoScalerChartRepo, Version: versions.KEDAKaitoScaler,
		Values: func(Values) map[string]any { return map[string]any{} },
	}
)

// UpstreamCharts are every chart of the upstream profile, for the preflight and image pulls.
func UpstreamCharts() []UpstreamChart {
	return []UpstreamChart{IstioBaseChart, IstiodChart, KAITOChart, BBRChart, AuthChart, KEDAChart, ScalerChart}
}

// Upstream is the upstream profile's catalogue: the production stack's own charts and images
// (facts §3), with the sandbox's GPU node mocker. Phases follow upstream's dependency order;
// inside a phase the installs run in parallel.
func Upstream() []Addon {
	return []Addon{
		// Every image is preloaded and the egress guard stays on, so nothing in the cluster
		// needs names outside it either.
		{Name: "offline DNS (CoreDNS without upstream forwarding)", Install: isolateCoreDNS, Ready: coreDNSReady},
		parallel("CRDs, KAITO, KEDA, GPU node mocker, model-not-found backend",
			Addon{Name: "Gateway API CRDs " + crds.GatewayAPIVersion, Install: installGatewayAPICRDs, Ready: gatewayAPICRDsEstablished},
			Addon{Name: "Inference Extension CRDs " + versions.InferenceExtension, Install: installInferenceExtensionCRDs, Ready: inferenceExtensionCRDsEstablished},
			Addon{Name: "GPU node mocker", Install: applyTemplate(manifests.Offline, "mocker.yaml"), Ready: gpusAdvertised},
			chartAddon("KAITO workspace "+versions.KAITO+" (InferenceSet controller, BYO nodes)", KAITOChart),
			chartAddon("KEDA "+versions.KEDAChart, KEDAChart),
			Addon{Name: "model-not-found backend (nginx)", Install: applyUpstreamTemplate("notfound"), Ready: deploymentReady("model-not-found")},
		),
		chartAddon("Istio base "+versions.Istio+" (CRDs)", IstioBaseChart),
		chartAddon("istiod "+versions.Istio+" (Gateway API + Inference Extension)", IstiodChart),
		parallel("body-based router, llm-gateway-auth, keda-kaito-scaler",
			chartAddon("body-based router "+versions.InferenceExtension, BBRChart),
			chartAddon("llm-gateway-auth "+versions.LLMGatewayAuth+" (APIKey operator + apikey-authz)", AuthChart),
			withReady(chartAddon("keda-kaito-scaler "+versions.KEDAKaitoScaler, ScalerChart), scalerTrusted),
		),
	}
}

// UpstreamComponents are the Deployments of the upstream catalogue, for `status`.
func UpstreamComponents(systemNamespace string) []Component {
	return []Component{
		{Name: "coredns", Namespace: "kube-system", Deployment: "coredns"},
		{Name: "gpu-node-mocker", Namespace: systemNamespace, Deployment: "gpu-node-mocker"},
		{Name: "model-not-found", Namespace: systemNamespace, Deployment: "model-not-found"},
		{Name: "istiod", Namespace: IstioNamespace, Deployment: "istiod"},
		{Name: "body-based-router", Namespace: KAITONamespace, Deployment: "body-based-router"},
		{Name: "apikey-operator", Namespace: AuthNamespace, Deployment: "apikey-operator"},
		{Name: "apikey-authz", Namespace: AuthNamespace, Deployment: "apikey-authz"},
		{Name: "keda-operator", Namespace: UpstreamKEDANamespace, Deployment: "keda-operator"},
		{Name: "keda-metrics-apiserver", Namespace: UpstreamKEDANamespace, Deployment: "keda-operator-metrics-apiserver"},
		{Name: "keda-kaito-scaler", Namespace: UpstreamKEDANamespace, Deployment: "keda-kaito-scaler"},
	}
}

// parallel runs a phase's addons concurrently, each installed then waited for; the phase
// fails with every member's error.
func parallel(name string, group ...Addon) Addon {
	return Addon{
		Name: name,
		Install: func(ctx context.Context, env *Env) error {
			var mu sync.Mutex
			var errs []string
			g, gctx := errgroup.WithContext(ctx)
			for _, a := range group {
				g.Go(func() error {
					start := time.Now()
					err := a.Install(gctx, env)
					if err == nil && a.Ready != nil {
						err = a.Ready(gctx, env)
					}
					if err != nil {
						if ctx.Err() == nil && gctx.Err() != nil && errors.Is(err, context.Canceled) {
							return err // stopped because a sibling failed: that one is the news
						}
						mu.Lock()
						errs = append(errs, a.Name+": "+err.Error())
						mu.Unlock()
						return err
					}
					env.Status.Infof("%s ready (%s)", a.Name, time.Since(start).Round(time.Second))
					return nil
				})
			}
			if g.Wait() != nil {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		},
	}
}

// chartTimeout bounds one chart's install and readiness wait (images are preloaded).
const chartTimeout = 5 * time.Minute

func chartAddon(name string, c UpstreamChart) Addon {
	return Addon{Name: name, Install: func(ctx context.Context, env *Env) error {
		chrt, err := FetchChart(ctx, c, env.Values.ChartCache)
		if err != nil {
			return err
		}
		return InstallChart(ctx, env, c, chrt)
	}}
}

func withReady(a Addon, ready func(context.Context, *Env) error) Addon {
	a.Ready = ready
	return a
}

// scalerTrusted waits for keda-kaito-scaler to have minted its CA, then restarts KEDA's
// operator so it reads the CA for the mTLS connection to the scaler; KAITO's CI does the same
// (kaito-keda-auth facts §3.2).
func scalerTrusted(ctx context.Context, env *Env) error {
	const secret = "keda-kaito-scaler-server-certs"
	var ca []byte
	err := kube.WaitFor(ctx, 3*time.Minute, time.Second, "keda-kaito-scaler's CA", func(ctx context.Context) (bool, string, error) {
		s, err := env.Client.Clientset.CoreV1().Secrets(UpstreamKEDANamespace).Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ca = s.Data["ca.crt"]
		if len(ca) == 0 {
			return false, "Secret " + secret + " has no ca.crt yet", nil
		}
		return true, "", nil
	})
	if err != nil {
		return err
	}
	// Keyed by the CA, so a repeated `up` restarts nothing and a new CA restarts once.
	sum := sha256.Sum256(ca)
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"sandbox.inference/keda-kaito-scaler-ca":%q}}}}}`, hex.EncodeToString(sum[:6]))
	if _, err := env.Client.Clientset.AppsV1().Deployments(UpstreamKEDANamespace).Patch(ctx, "keda-operator", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("restarting keda-operator: %w", err)
	}
	return env.Client.WaitDeployment(ctx, UpstreamKEDANamespace, "keda-operator", 3*time.Minute)
}

// installGatewayAPICRDs applies the standard channel from the gateway-api module, the same as
// the offline profile, without the offline profile's own APIKey/InferenceSet CRDs (the KAITO
// and llm-gateway-auth charts own those upstream).
func installGatewayAPICRDs(ctx context.Context, env *Env) error {
	objs, err := gatewayAPIObjects(ctx)
	if err != nil {
		return err
	}
	return env.Client.Apply(ctx, objs)
}

func gatewayAPICRDsEstablished(ctx context.Context, env *Env) error {
	objs, err := gatewayAPIObjects(ctx)
	if err != nil {
		return err
	}
	return waitEstablished(ctx, env, objs)
}

func installInferenceExtensionCRDs(ctx context.Context, env *Env) error {
	objs, err := InferenceExtensionCRDs(ctx, env.Values.ChartCache)
	if err != nil {
		return err
	}
	return env.Client.Apply(ctx, objs)
}

func inferenceExtensionCRDsEstablished(ctx context.Context, env *Env) error {
	objs, err := InferenceExtensionCRDs(ctx, env.Values.ChartCache)
	if err != nil {
		return err
	}
	return waitEstablished(ctx, env, objs)
}

// InferenceExtensionCRDs downloads (once, into cacheDir) the pinned release manifest of the
// Gateway API Inference Extension and returns its CRDs, from the GitHub release as upstream's
// install does. (The module proxy serves sigs.k8s.io/gateway-api-inference-extension@v1.5.0
// too; the tests read its config/crd/bases and body-based-routing chart from there.)
func InferenceExtensionCRDs(ctx context.Context, cacheDir string) ([]*unstructured.Unstructured, error) {
	data, err := fetchCached(ctx, versions.InferenceExtensionCRDs, filepath.Join(cacheDir, "gateway-api-inference-extension-"+versions.InferenceExtension+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("Inference Extension CRDs: %w", err)
	}
	objs, err := kube.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("Inference Extension CRDs %s: %w", versions.InferenceExtensionCRDs, err)
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no CustomResourceDefinition", versions.InferenceExtensionCRDs)
	}
	return out, nil
}

// fetchCached returns the file at path, downloading url there first when missing.
func fetchCached(ctx context.Context, url, path string) ([]byte, error) {
	if data, err := os.ReadFile(path); err == nil {
		return data, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", url, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return nil, err
	}
	return data, os.Rename(path+".tmp", path)
}

// waitEstablished waits until the API server serves every CRD among objs.
func waitEstablished(ctx context.Context, env *Env, objs []*unstructured.Unstructured) error {
	return kube.WaitFor(ctx, time.Minute, 500*time.Millisecond, "CRDs", func(ctx context.Context) (bool, string, error) {
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			crd, err := env.Client.Dynamic.Resource(crdGVR).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if ok, _, _ := conditionStatus(crd, "Established"); !ok {
				return false, "CRD " + o.GetName() + " not established", nil
			}
		}
		return true, "", nil
	})
}

func conditionStatus(obj *unstructured.Unstructured, t string) (bool, string, error) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t {
			return m["status"] == "True", fmt.Sprint(m["message"]), nil
		}
	}
	return false, "no " + t + " condition", nil
}

//go:embed upstream_notfound.yaml
var upstreamFS embed.FS

// upstreamTemplates are the upstream profile's own manifests (Go templates of the addon Values).
var upstreamTemplates = map[string]string{"notfound": "upstream_notfound.yaml"}

type upstreamTemplateValues struct {
	Values
	NotFoundImage string
}

// RenderUpstream renders one of the upstream profile's own manifests ("notfound").
func RenderUpstream(name string, v Values) ([]*unstructured.Unstructured, error) {
	file, ok := upstreamTemplates[name]
	if !ok {
		return nil, fmt.Errorf("no upstream template %q", name)
	}
	return kube.RenderObjects(upstreamFS, file, upstreamTemplateValues{Values: v, NotFoundImage: versions.NotFoundImage})
}

func applyUpstreamTemplate(name string) func(context.Context, *Env) error {
	return func(ctx context.Context, env *Env) error {
		objs, err := RenderUpstream(name, env.Values)
		if err != nil {
			return err
		}
		return env.Client.Apply(ctx, objs)
	}
}

// UpstreamHarnessValues are the modelharness values of a namespace on the upstream profile:
// the istio mode, the shared nginx 404 backend, and the gateway's NodePort (0: none).
func UpstreamHarnessValues(namespace string, nodePort int) map[string]any {
	return map[string]any{
		"namespace":        namespace,
		"gatewayClassName": "istio",
		"modelNotFound":    map[string]any{"namespace": DefaultSystemNamespace},
		"istio":            map[string]any{"nodePort": nodePort},
	}
}

// UpstreamModelValues are the modeldeployment values of one model on the upstream profile:
// llm-d's picker and an InferenceSet pod template running llm-d-inference-sim, autoscaled by
// keda-kaito-scaler between min and max when max > 0.
func UpstreamModelValues(name, namespace, preset string, replicas, min, max int) map[string]any {
	v := map[string]any{
		"name": name, "namespace": namespace, "model": preset, "replicas": replicas,
		"gatewayClassName": "istio", "enableScaling": max > 0,
	}
	if max > 0 {
		v["minReplicas"], v["maxReplicas"] = min, max
	}
	return v
}
