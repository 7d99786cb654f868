package models

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inference-sandbox/sandbox/internal/components/epp"
	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/plugins"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

func renderModel(t *testing.T, values map[string]any) (map[string]*unstructured.Unstructured, error) {
	t.Helper()
	c, err := helm.LoadChart(manifests.Charts, DeploymentChart)
	if err != nil {
		t.Fatal(err)
	}
	out, err := helm.Render(c, "phi-4-mini", "models", values)
	if err != nil {
		return nil, err
	}
	objs, err := kube.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byKey[o.GetKind()+"/"+o.GetName()] = o
	}
	return byKey, nil
}

func field[T any](t *testing.T, o *unstructured.Unstructured, path ...string) T {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s/%s: no %s", o.GetKind(), o.GetName(), strings.Join(path, "."))
	}
	tv, ok := v.(T)
	if !ok {
		t.Fatalf("%s/%s: %s is %T", o.GetKind(), o.GetName(), strings.Join(path, "."), v)
	}
	return tv
}

// The default model renders every object of upstream's chart under upstream's names, and each
// object is one the offline components accept.
func TestModeldeploymentRendersDefaultModel(t *testing.T) {
	o := DefaultModels("models", "sandbox-stackd:test", "")[0]
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	objs, err := renderModel(t, chartValues(o))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"InferenceSet/phi-4-mini", "InferencePool/phi-4-mini-inferencepool", "HTTPRoute/phi-4-mini-route",
		"Deployment/phi-4-mini-inferencepool-epp", "Service/phi-4-mini-inferencepool-epp",
		"ServiceAccount/phi-4-mini-inferencepool-epp", "Role/phi-4-mini-inferencepool-epp",
		"RoleBinding/phi-4-mini-inferencepool-epp", "ConfigMap/phi-4-mini-inferencepool-epp",
	} {
		o, ok := objs[key]
		if !ok {
			t.Errorf("missing %s", key)
			continue
		}
		if o.GetNamespace() != "models" || o.GetLabels()["kaito.sh/owned-by"] != "modeldeployment" {
			t.Errorf("%s: namespace %q labels %v", key, o.GetNamespace(), o.GetLabels())
		}
	}
	if len(objs) != 9 {
		t.Errorf("%d objects, want 9", len(objs))
	}

	// InferenceSet: what the controller reads, with the v0.5 scaling annotations.
	isObj := objs["InferenceSet/phi-4-mini"]
	for k, v := range map[string]string{
		"scaledobject.kaito.sh/auto-provision": "true",
		"scaledobject.kaito.sh/threshold":      "10",
		"scaledobject.kaito.sh/metricName":     "vllm:num_requests_waiting",
		"scaledobject.kaito.sh/min-replicas":   "1",
		"scaledobject.kaito.sh/max-replicas":   "4",
	} {
		if got := isObj.GetAnnotations()[k]; got != v {
			t.Errorf("annotation %s = %q, want %q", k, got, v)
		}
	}
	var is inferenceset.InferenceSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(isObj.Object, &is); err != nil {
		t.Fatal(err)
	}
	if err := inferenceset.Validate(&is); err != nil {
		t.Errorf("the controller rejects the rendered InferenceSet: %v", err)
	}
	if is.DesiredReplicas() != 1 || is.Spec.Template.Inference.Preset.Name != "phi-4-mini-instruct" ||
		is.Spec.LabelSelector.MatchLabels["accelerator"] != "nvidia" {
		t.Errorf("InferenceSet spec %+v", is.Spec)
	}
	if m := modelFrom(&is); !m.Autoscaled || m.MinReplicas != 1 || m.MaxReplicas != 4 || m.Preset != "phi-4-mini-instruct" {
		t.Errorf("model list would show %+v", m)
	}

	// InferencePool: the model pods on 5000, the picker on 9002.
	pool := objs["InferencePool/phi-4-mini-inferencepool"]
	sel := field[map[string]any](t, pool, "spec", "selector", "matchLabels")
	if sel[inferenceset.LabelCreatedBy] != "phi-4-mini" || sel[inferenceset.LabelPodIndex] != "0" || len(sel) != 2 {
		t.Errorf("pool selector %v", sel)
	}
	ports := field[[]any](t, pool, "spec", "targetPorts")
	if len(ports) != 1 || ports[0].(map[string]any)["number"] != int64(inferenceset.ServingPort) {
		t.Errorf("target ports %v", ports)
	}
	if field[string](t, pool, "spec", "endpointPickerRef", "name") != "phi-4-mini-inferencepool-epp" ||
		field[int64](t, pool, "spec", "endpointPickerRef", "port", "number") != 9002 ||
		field[string](t, pool, "spec", "endpointPickerRef", "failureMode") != "FailClose" {
		t.Errorf("endpointPickerRef %v", pool.Object["spec"])
	}

	// HTTPRoute: the namespace's Gateway, the model-name header, the pool.
	route := objs["HTTPRoute/phi-4-mini-route"]
	if p := field[[]any](t, route, "spec", "parentRefs"); p[0].(map[string]any)["name"] != "models-gw" {
		t.Errorf("parentRefs %v", p)
	}
	rule := field[[]any](t, route, "spec", "rules")[0].(map[string]any)
	h := rule["matches"].([]any)[0].(map[string]any)["headers"].([]any)[0].(map[string]any)
	if h["name"] != "X-Gateway-Model-Name" || h["value"] != "phi-4-mini" || h["type"] != "Exact" {
		t.Errorf("first match header %v", h)
	}
	b := rule["backendRefs"].([]any)[0].(map[string]any)
	if b["kind"] != "InferencePool" || b["group"] != "inference.networking.k8s.io" || b["name"] != "phi-4-mini-inferencepool" {
		t.Errorf("backendRef %v", b)
	}

	// The picker: stackd epp with flags it knows, the config with upstream's weights.
	dep := objs["Deployment/phi-4-mini-inferencepool-epp"]
	ctr := field[[]any](t, dep, "spec", "template", "spec", "containers")[0].(map[string]any)
	if ctr["image"] != "sandbox-stackd:test" {
		t.Errorf("picker image %v", ctr["image"])
	}
	var args []string
	for _, a := range ctr["args"].([]any) {
		args = append(args, a.(string))
	}
	if args[0] != "epp" {
		t.Fatalf("picker args %v do not start with the epp component", args)
	}
	cmd := epp.NewCommand()
	if err := cmd.ParseFlags(args[1:]); err != nil {
		t.Errorf("stackd epp rejects %v: %v", args, err)
	}
	if v, _ := cmd.Flags().GetString("pool-name"); v != "phi-4-mini-inferencepool" {
		t.Errorf("--pool-name %q", v)
	}
	if field[int64](t, dep, "spec", "strategy", "rollingUpdate", "maxUnavailable") != 0 {
		t.Error("a picker update would leave the pool without a picker (FailClose: 502s)")
	}
	svcPorts := field[[]any](t, objs["Service/phi-4-mini-inferencepool-epp"], "spec", "ports")
	if svcPorts[0].(map[string]any)["port"] != int64(9002) || svcPorts[0].(map[string]any)["appProtocol"] != "grpc" {
		t.Errorf("picker Service ports %v", svcPorts)
	}
	cfg := field[string](t, objs["ConfigMap/phi-4-mini-inferencepool-epp"], "data", "default-plugins.yaml")
	if strings.Join(strings.Fields(cfg), " ") != strings.Join(strings.Fields(scheduling.DefaultConfig), " ") {
		t.Errorf("picker config differs from the production stack's:\n%s", cfg)
	}
	if _, err := scheduling.Load([]byte(cfg), plugins.Registry(), scheduling.Handle{Store: datastore.NewStore()}, nil); err != nil {
		t.Errorf("stackd epp cannot load the rendered config: %v", err)
	}
}

func TestModeldeploymentFixedReplicasAndLatency(t *testing.T) {
	o := DeployOptions{Name: "phi-4-mini", Namespace: "models", Replicas: 3, LatencyProfile: "70b-tp8",
		LatencyCalculator: "constant", SimulatorArgs: "--max-num-seqs 4 --kv-cache-size=96", EPPImage: "stackd:test"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	objs, err := renderModel(t, chartValues(o))
	if err != nil {
		t.Fatal(err)
	}
	isObj := objs["InferenceSet/phi-4-mini"]
	if len(isObj.GetAnnotations()) != 0 {
		t.Errorf("scaling annotations without autoscaling: %v", isObj.GetAnnotations())
	}
	ann := field[map[string]any](t, isObj, "spec", "template", "metadata", "annotations")
	if ann[inferenceset.AnnotationLatencyProfile] != "70b-tp8" || ann[inferenceset.AnnotationLatencyCalculator] != "constant" ||
		ann[inferenceset.AnnotationSimulatorArgs] != o.SimulatorArgs {
		t.Errorf("latency and simulator annotations %v", ann)
	}
	if field[int64](t, isObj, "spec", "replicas") != 3 {
		t.Error("replicas not 3")
	}
}

func TestModeldeploymentSchemaRejectsBadValues(t *testing.T) {
	good := func() map[string]any { return chartValues(DefaultModels("models", "stackd:test", "")[0]) }
	for name, tc := range map[string]struct {
		mutate func(map[string]any)
		want   string
	}{
		"unknown key":              {func(v map[string]any) { v["replica"] = 2 }, "invalid values"},
		"no model":                 {func(v map[string]any) { v["model"] = "" }, "model"},
		"negative replicas":        {func(v map[string]any) { v["replicas"] = -1 }, "replicas"},
		"replicas as string":       {func(v map[string]any) { v["replicas"] = "2" }, "replicas"},
		"bad name":                 {func(v map[string]any) { v["name"] = "Phi_4" }, "name"},
		"name too long":            {func(v map[string]any) { v["name"] = strings.Repeat("m", 41) }, "name"},
		"bad profile":              {func(v map[string]any) { v["latencyProfile"] = "b200" }, "latencyProfile"},
		"simulator args not flags": {func(v map[string]any) { v["simulatorArgs"] = "max-num-seqs 4" }, "simulatorArgs"},
		"bad failure mode": {func(v map[string]any) {
			v["epp"].(map[string]any)["failureMode"] = "Retry"
		}, "failureMode"},
		"no picker image": {func(v map[string]any) { v["epp"] = map[string]any{"image": map[string]any{"repository": ""}} }, "repository"},
		"max below min":   {func(v map[string]any) { v["minReplicas"], v["maxReplicas"] = 3, 2 }, "maxReplicas (2) must be at least minReplicas (3)"},
		"replicas above max": {func(v map[string]any) { v["replicas"] = 5 },
			"replicas (5) must lie between minReplicas (1) and maxReplicas (4)"},
	} {
		v := good()
		tc.mutate(v)
		_, err := renderModel(t, v)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error does not mention %q: %v", name, tc.want, err)
		}
	}
}

func TestDeployOptionsValidate(t *testing.T) {
	ok := DeployOptions{Name: "m", Namespace: "models", Replicas: 1}
	for name, o := range map[string]DeployOptions{
		"bad name":          {Name: "M!", Namespace: "models", Replicas: 1},
		"long name":         {Name: strings.Repeat("m", 41), Namespace: "models", Replicas: 1},
		"bad namespace":     {Name: "m", Namespace: "", Replicas: 1},
		"negative replicas": {Name: "m", Namespace: "models", Replicas: -1},
		"bad sim args":      {Name: "m", Namespace: "models", Replicas: 1, SimulatorArgs: "--max-num-seqs many"},
		"reserved sim arg":  {Name: "m", Namespace: "models", Replicas: 1, SimulatorArgs: "--port 1"},
		"min without max":   {Name: "m", Namespace: "models", Replicas: 1, MinReplicas: 1},
		"max of one":        {Name: "m", Namespace: "models", Replicas: 1, MaxReplicas: 1},
		"max below min":     {Name: "m", Namespace: "models", Replicas: 3, MinReplicas: 3, MaxReplicas: 2},
		"replicas outside":  {Name: "m", Namespace: "models", Replicas: 5, MinReplicas: 1, MaxReplicas: 4},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	if p := PresetFor("ministral-3b"); p != "ministral-3-3b-instruct" {
		t.Errorf("preset %q", p)
	}
	if p := PresetFor("llama-3-8b"); p != "llama-3-8b" {
		t.Errorf("preset %q", p)
	}
}

func TestModeldeploymentPickerConfig(t *testing.T) {
	const random = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 1}
  - {pluginRef: random-picker}
`
	o := DeployOptions{Name: "phi-4-mini", Namespace: "models", Replicas: 1, PickerConfig: random, EPPImage: "stackd:test"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	objs, err := renderModel(t, chartValues(o))
	if err != nil {
		t.Fatal(err)
	}
	cfg := field[string](t, objs["ConfigMap/phi-4-mini-inferencepool-epp"], "data", "default-plugins.yaml")
	if strings.TrimSpace(cfg) != strings.TrimSpace(random) {
		t.Fatalf("the picker's config is not the one given:\n%s", cfg)
	}
	if _, err := scheduling.Load([]byte(cfg), plugins.Registry(), scheduling.Handle{Store: datastore.NewStore()}, nil); err != nil {
		t.Fatalf("stackd epp cannot load the rendered config: %v", err)
	}

	for name, bad := range map[string]string{
		"not YAML":       "plugins: [",
		"unknown plugin": "plugins:\n- type: no-such-scorer\n",
		"dangling ref":   "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - {pluginRef: nope}\n",
	} {
		o.PickerConfig = bad
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--picker-config") {
			t.Errorf("%s: %v, want an error naming --picker-config", name, err)
		}
	}
}
