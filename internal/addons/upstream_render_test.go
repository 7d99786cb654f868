package addons

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/progress"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"github.com/inference-sandbox/sandbox/manifests"
)

// The values `up --profile upstream` passes (internal/lifecycle/upstream.go), with auth
// switchable.
func istioHarnessValues(namespace string, auth bool) map[string]any {
	v := UpstreamHarnessValues(namespace, 30080)
	v["auth"] = map[string]any{"enabled": auth}
	return v
}

func istioModelValues(name string) map[string]any {
	return UpstreamModelValues(name, "models", "phi-4-mini-instruct", 1, 1, 4)
}

func renderEmbedded(t *testing.T, chartName, release, namespace string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	c, err := helm.LoadChart(manifests.Charts, chartName)
	if err != nil {
		t.Fatal(err)
	}
	out, err := helm.Render(c, release, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func TestIstioModeChartsMatchRealSchemas(t *testing.T) {
	s := loadSchemas(t)
	harness := renderEmbedded(t, "modelharness", "modelharness", "default", istioHarnessValues("team-a", true))
	requireValid(t, s, "modelharness (istio, auth)", harness)
	for _, want := range []string{"Namespace/team-a", "Gateway/team-a-gw", "ConfigMap/team-a-gw-istio-options",
		"EnvoyFilter/apikey-ext-authz", "EnvoyFilter/bbr-ext-proc", "HTTPRoute/model-not-found-route", "APIKey/default",
		"ReferenceGrant/allow-model-not-found-from-team-a"} {
		kind, name, _ := strings.Cut(want, "/")
		if find(harness, kind, name) == nil {
			t.Errorf("modelharness (istio) lacks %s", want)
		}
	}
	gw := find(harness, "Gateway", "team-a-gw")
	if ref, _, _ := unstructured.NestedString(gw.Object, "spec", "infrastructure", "parametersRef", "name"); ref != "team-a-gw-istio-options" {
		t.Errorf("Gateway does not reference its Istio options: %q", ref)
	}
	opts := find(harness, "ConfigMap", "team-a-gw-istio-options")
	svc, _, _ := unstructured.NestedString(opts.Object, "data", "service")
	if !strings.Contains(svc, "type: NodePort") || !strings.Contains(svc, "nodePort: 30080") {
		t.Errorf("gateway Service overlay does not publish NodePort 30080:\n%s", svc)
	}

	noAuth := renderEmbedded(t, "modelharness", "modelharness", "models", istioHarnessValues("models", false))
	requireValid(t, s, "modelharness (istio, no auth)", noAuth)
	if find(noAuth, "EnvoyFilter", "apikey-ext-authz") != nil || find(noAuth, "APIKey", "default") != nil {
		t.Error("auth disabled still renders the API-key check")
	}
	if find(noAuth, "EnvoyFilter", "bbr-ext-proc") == nil {
		t.Error("the body-based router filter depends on auth")
	}

	model := renderEmbedded(t, "modeldeployment", "phi-4-mini", "models", istioModelValues("phi-4-mini"))
	requireValid(t, s, "modeldeployment (istio)", model)

	// KAITO's CRD is not in the module cache: check the pod template against core/v1 itself.
	is := find(model, "InferenceSet", "phi-4-mini")
	raw, ok, _ := unstructured.NestedMap(is.Object, "spec", "template", "inference", "template")
	if !ok {
		t.Fatalf("InferenceSet has no pod template:\n%v", is.Object)
	}
	if _, preset, _ := unstructured.NestedMap(is.Object, "spec", "template", "inference", "preset"); preset {
		t.Error("InferenceSet has both a preset and a pod template (KAITO rejects that)")
	}
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(raw, &tmpl, true); err != nil {
		t.Fatalf("pod template is not a valid core/v1 PodTemplateSpec: %v", err)
	}
	c := tmpl.Spec.Containers[0]
	if c.Image != versions.SimImage {
		t.Errorf("simulator image %s, want the pinned %s", c.Image, versions.SimImage)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 5000 {
		t.Errorf("simulator ports %+v, want 5000 (KAITO's Service, the InferencePool and the scaler use it)", c.Ports)
	}
	gpu := c.Resources.Requests["nvidia.com/gpu"]
	lim := c.Resources.Limits["nvidia.com/gpu"]
	if gpu.Value() != 1 || lim.Value() != 1 {
		t.Errorf("simulator requests %s / limits %s nvidia.com/gpu, want 1 so the fake GPUs schedule it", gpu.String(), lim.String())
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--port=5000", "--served-model-name=phi-4-mini", "--model=phi-4-mini-instruct", "--force-dummy-tokenizer=true", "--max-num-seqs=5", "--kv-cache-size=10240"} {
		if !strings.Contains(args, want) {
			t.Errorf("simulator args lack %s: %s", want, args)
		}
	}
	epp := find(model, "Deployment", "phi-4-mini-inferencepool-epp")
	containers, _, _ := unstructured.NestedSlice(epp.Object, "spec", "template", "spec", "containers")
	ec := containers[0].(map[string]any)
	if ec["image"] != versions.EPPImage {
		t.Errorf("picker image %v, want llm-d's %s", ec["image"], versions.EPPImage)
	}
	if eargs, _ := ec["args"].([]any); len(eargs) == 0 || eargs[0] != "--pool-name" {
		t.Errorf("upstream picker args must start with its own flags (no stackd component): %v", eargs)
	}
	cm := find(model, "ConfigMap", "phi-4-mini-inferencepool-epp")
	cfg, _, _ := unstructured.NestedString(cm.Object, "data", "default-plugins.yaml")
	for _, want := range []string{"kind: EndpointPickerConfig", "queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("picker config lacks %s", want)
		}
	}
	images := Images(model)
	if !slices.Contains(images, versions.SimImage) || !slices.Contains(images, versions.EPPImage) {
		t.Errorf("images of a model %v miss the simulator or the picker", images)
	}
}

// The chart's istio-mode image defaults and internal/versions must name the same images.
func TestChartUpstreamImagesAreThePins(t *testing.T) {
	c, err := helm.LoadChart(manifests.Charts, "modeldeployment")
	if err != nil {
		t.Fatal(err)
	}
	up := c.Values["upstream"].(map[string]any)
	if up["eppImage"] != versions.EPPImage {
		t.Errorf("chart eppImage %v, versions.EPPImage %s", up["eppImage"], versions.EPPImage)
	}
	if img := up["sim"].(map[string]any)["image"]; img != versions.SimImage {
		t.Errorf("chart sim image %v, versions.SimImage %s", img, versions.SimImage)
	}
}

func TestIstioModeKeepsOfflineSchemaChecks(t *testing.T) {
	c, err := helm.LoadChart(manifests.Charts, "modeldeployment")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.Render(c, "m", "models", map[string]any{"model": "x"}); err == nil {
		t.Error("offline mode without a picker image accepted")
	}
	if _, err := helm.Render(c, "m", "models", map[string]any{"model": "x", "gatewayClassName": "istio"}); err != nil {
		t.Errorf("istio mode needs no picker image (it uses llm-d's): %v", err)
	}
	if _, err := helm.Render(c, "m", "models", map[string]any{"model": "x", "gatewayClassName": "nginx"}); err == nil {
		t.Error("unknown gateway class accepted")
	}
}

func TestUpstreamOwnManifestsMatchSchemas(t *testing.T) {
	s := loadSchemas(t)
	v := Values{SystemNamespace: DefaultSystemNamespace, StackdImage: "sandbox-stackd:0123456789ab", GPUsPerNode: 4}
	nf, err := RenderUpstream("notfound", v)
	if err != nil {
		t.Fatal(err)
	}
	requireValid(t, s, "model-not-found (nginx)", nf)
	if imgs := Images(nf); len(imgs) != 1 || imgs[0] != versions.NotFoundImage {
		t.Errorf("model-not-found images %v, want %s", imgs, versions.NotFoundImage)
	}
	mocker, err := kube.RenderObjects(manifests.Offline, "mocker.yaml", v)
	if err != nil {
		t.Fatal(err)
	}
	requireValid(t, s, "GPU node mocker", mocker)
	gw, err := gatewayAPIObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	requireValid(t, s, "Gateway API CRDs", gw)
}

// istio.io/istio's own charts (the same templates as the released base and istiod charts),
// rendered from the module cache with the catalogue's values.
func TestIstioChartsRenderWithCatalogueValues(t *testing.T) {
	s := loadSchemas(t)
	dir := istioModuleDir(t)
	v := Values{ClusterName: "sandbox"}
	for _, tc := range []struct {
		chart UpstreamChart
		path  string
	}{
		{IstioBaseChart, "manifests/charts/base"},
		{IstiodChart, "manifests/charts/istio-control/istio-discovery"},
	} {
		chrt, err := loader.Load(filepath.Join(dir, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := RenderChart(chrt, tc.chart.Release, tc.chart.Namespace, tc.chart.Values(v))
		if err != nil {
			t.Fatalf("%s: %v", tc.chart.Release, err)
		}
		requireValid(t, s, tc.chart.Release, objs)
		if tc.chart.Release != "istiod" {
			if find(objs, "CustomResourceDefinition", "envoyfilters.networking.istio.io") == nil {
				t.Error("istio base renders no EnvoyFilter CRD")
			}
			continue
		}
		d := find(objs, "Deployment", "istiod")
		if d == nil {
			t.Fatal("istiod chart renders no istiod Deployment")
		}
		var dep struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(d.Object, &dep); err != nil {
			t.Fatal(err)
		}
		pilot := dep.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range pilot.Env {
			env[e.Name] = e.Value
		}
		if env["ENABLE_GATEWAY_API_INFERENCE_EXTENSION"] != "true" {
			t.Errorf("istiod runs without ENABLE_GATEWAY_API_INFERENCE_EXTENSION=true: %v", env)
		}
		if pilot.Image != versions.IstioHub+"/pilot:"+versions.Istio {
			t.Errorf("istiod image %s, want the pinned pilot %s", pilot.Image, versions.Istio)
		}
		// Empty is the API server's IfNotPresent for a tag other than latest.
		if p := pilot.ImagePullPolicy; p != "" && p != corev1.PullIfNotPresent {
			t.Errorf("istiod imagePullPolicy %q: the image is preloaded and nodes cannot pull", p)
		}
		if cpu := pilot.Resources.Requests.Cpu(); cpu.MilliValue() > 100 {
			t.Errorf("istiod requests %s CPU; two shared cores need it small", cpu)
		}
	}
}

func TestUpstreamCatalogueOrder(t *testing.T) {
	var names []string
	for _, a := range Upstream() {
		names = append(names, a.Name)
	}
	all := strings.Join(names, " | ")
	idx := func(s string) int { return strings.Index(all, s) }
	for _, pair := range [][2]string{
		{"CRDs", "Istio base"},          // Istio's inference support needs InferencePool
		{"Istio base", "istiod"},        // CRDs before the control plane
		{"istiod", "body-based router"}, // the routers' Istio objects need Istio
		{"KEDA", "keda-kaito-scaler"},   // the scaler's objects are KEDA's
		{"KAITO", "keda-kaito-scaler"},  // ... and it watches InferenceSets
		{"istiod", "llm-gateway-auth"},  // the auth chart renders Istio objects
	} {
		if idx(pair[0]) < 0 || idx(pair[1]) < 0 || idx(pair[0]) > idx(pair[1]) {
			t.Errorf("%s must come before %s: %s", pair[0], pair[1], all)
		}
	}
}

// parallel runs a phase's members at the same time and reports every member's failure.
func TestParallelPhase(t *testing.T) {
	var running, peak atomic.Int32
	member := func(name string, fail bool) Addon {
		return Addon{Name: name, Install: func(ctx context.Context, env *Env) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			running.Add(-1)
			if fail {
				return errors.New("boom")
			}
			return nil
		}}
	}
	env := &Env{Status: progress.Discard()}
	if err := parallel("ok", member("a", false), member("b", false), member("c", false)).Install(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if peak.Load() < 2 {
		t.Errorf("members ran one at a time (peak %d)", peak.Load())
	}
	waiter := Addon{Name: "waiter", Install: func(ctx context.Context, env *Env) error {
		<-ctx.Done() // a long wait that the sibling's failure cuts short
		return ctx.Err()
	}}
	err := parallel("bad", member("a", false), member("b", true), waiter).Install(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "b: boom") {
		t.Fatalf("failure not reported with its member: %v", err)
	}
	if strings.Contains(err.Error(), "waiter") {
		t.Errorf("a member stopped by its sibling's failure is reported as a failure too: %v", err)
	}
}
