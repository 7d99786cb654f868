package addons

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"github.com/inference-sandbox/sandbox/manifests"
)

// The real charts of the upstream profile that the Go module proxy serves, read from the module
// cache (never copied into this repository):
//
//   - body-based-routing: sigs.k8s.io/gateway-api-inference-extension at exactly the pinned
//     versions.InferenceExtension, config/charts/body-based-routing (the released OCI chart is
//     that directory packaged with the release's version);
//   - keda: github.com/kedacore/charts at a pseudo-version whose keda/ chart is 2.20.2, the
//     nearest version the proxy has to the pinned versions.KEDAChart (2.19.0): the proxy has no
//     tagged module of that repository, so the keys and objects checked here are 2.20.2's.
const (
	inferenceExtensionModule = crds.InferenceExtensionModule
	kedaChartsModule         = "github.com/kedacore/charts"
	kedaChartsVersion        = "v2.20.3-0.20260903105638-fe065f4d8938+incompatible"
)

func moduleChart(t *testing.T, module, version, path string) *chart.Chart {
	t.Helper()
	dir, err := crds.ModuleDir(context.Background(), module, version)
	if err != nil {
		t.Skipf("%s@%s not in the module cache and not downloadable: %v", module, version, err)
	}
	chrt, err := loader.Load(filepath.Join(dir, path))
	if err != nil {
		t.Fatalf("loading %s from %s@%s: %v", path, module, version, err)
	}
	return chrt
}

// unknownValueKeys returns every key path of set that the chart's values.yaml does not have.
// Helm merges unknown keys silently, so a misspelt or stale key would just do nothing.
func unknownValueKeys(defaults, set map[string]any, prefix string) []string {
	var out []string
	for k, v := range set {
		path := prefix + k
		d, ok := defaults[k]
		if !ok {
			out = append(out, path)
			continue
		}
		sub, isMap := v.(map[string]any)
		dsub, defIsMap := d.(map[string]any)
		switch {
		case isMap && defIsMap:
			out = append(out, unknownValueKeys(dsub, sub, path+".")...)
		case isMap != defIsMap && d != nil:
			out = append(out, fmt.Sprintf("%s (a %T in the chart)", path, d))
		}
	}
	sort.Strings(out)
	return out
}

func TestUnknownValueKeys(t *testing.T) {
	defaults := map[string]any{"a": map[string]any{"b": 1, "c": nil}, "d": "x"}
	if got := unknownValueKeys(defaults, map[string]any{"a": map[string]any{"b": 2, "c": map[string]any{"x": 1}}, "d": "y"}, ""); len(got) > 0 {
		t.Errorf("known keys reported: %v", got)
	}
	got := unknownValueKeys(defaults, map[string]any{"a": map[string]any{"z": 1}, "d": map[string]any{"e": 1}, "f": 1}, "")
	if want := []string{"a.z", "d (a string in the chart)", "f"}; !slices.Equal(got, want) {
		t.Errorf("unknown keys %v, want %v", got, want)
	}
}

// renderUpstreamChart renders chrt the way InstallChart installs it (values validated against
// the chart's own schema, if any), minus the post-renderer: what the chart renders from the
// catalogue's values alone. Every object must pass the API server's checks.
func renderUpstreamChart(t *testing.T, s *schemas, c UpstreamChart, chrt *chart.Chart) []*unstructured.Unstructured {
	t.Helper()
	values := c.Values(Values{ClusterName: "sandbox"})
	if bad := unknownValueKeys(chrt.Values, values, ""); len(bad) > 0 {
		t.Errorf("%s: the catalogue sets values %s %s does not have", c.Release, strings.Join(bad, ", "), chrt.Metadata.Version)
	}
	if err := helm.ValidateValues(chrt, values); err != nil {
		t.Errorf("%s: values rejected by the chart's schema: %v", c.Release, err)
	}
	objs, err := RenderChart(chrt, c.Release, c.Namespace, values)
	if err != nil {
		t.Fatalf("%s: %v", c.Release, err)
	}
	requireValid(t, s, c.Release+" "+chrt.Metadata.Version, objs)
	return objs
}

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	u := find(objs, "Deployment", name)
	if u == nil {
		t.Fatalf("no Deployment %s", name)
	}
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// bbrFlags parses the body-based router's container args the way its binary does (pflag;
// positional arguments are ignored), with the v1.5.0 defaults of the flags that matter here
// (pkg/bbr/server/options.go: --secure-serving defaults to true, --streaming to false).
func bbrFlags(t *testing.T, args []string) (secure, streaming bool, grpcPort int, plugins []string) {
	t.Helper()
	fs := pflag.NewFlagSet("bbr", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.BoolVar(&secure, "secure-serving", true, "")
	fs.BoolVar(&streaming, "streaming", false, "")
	fs.IntVar(&grpcPort, "grpc-port", 9004, "")
	fs.StringArrayVar(&plugins, "plugin", nil, "")
	if err := fs.Parse(args); err != nil {
		t.Fatalf("body-based router args %q: %v", args, err)
	}
	return secure, streaming, grpcPort, plugins
}

// The body-based-routing chart of the pinned Inference Extension release, rendered with the
// catalogue's values, against what the modelharness chart's istio mode expects of it.
func TestBBRChartRendersWithCatalogueValues(t *testing.T) {
	s := loadSchemas(t)
	chrt := moduleChart(t, inferenceExtensionModule, versions.InferenceExtension, "config/charts/body-based-routing")
	objs := renderUpstreamChart(t, s, BBRChart, chrt)
	for _, o := range objs {
		if o.GetNamespace() != BBRChart.Namespace {
			t.Errorf("%s/%s rendered into %q, not the release namespace %s", o.GetKind(), o.GetName(), o.GetNamespace(), BBRChart.Namespace)
		}
		if o.GetAPIVersion() != "v1" && !strings.HasPrefix(o.GetAPIVersion(), "apps/") && !strings.HasPrefix(o.GetAPIVersion(), "rbac.") {
			t.Errorf("provider none still renders %s %s (the harness wires each gateway itself)", o.GetAPIVersion(), o.GetKind())
		}
	}

	d := deploymentOf(t, objs, "body-based-router") // the name UpstreamComponents watches
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("body-based router containers: %+v", d.Spec.Template.Spec.Containers)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != versions.BBRImage {
		t.Errorf("body-based router image %s, want the pinned %s", c.Image, versions.BBRImage)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("body-based router imagePullPolicy %q: kind nodes have the image preloaded and no registry, want IfNotPresent", c.ImagePullPolicy)
	}
	secure, streaming, grpcPort, plugins := bbrFlags(t, c.Args)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == grpcPort }) {
		t.Errorf("container ports %+v lack the ext_proc port %d", c.Ports, grpcPort)
	}
	// The header the model HTTPRoutes match on must be the one BBR writes.
	if !slices.ContainsFunc(plugins, func(p string) bool {
		return strings.HasPrefix(p, "body-field-to-header:") && strings.Contains(p, `"fieldName":"model"`) && strings.Contains(p, `"headerName":"X-Gateway-Model-Name"`)
	}) {
		t.Errorf("no plugin copies the body's model into X-Gateway-Model-Name: %q", plugins)
	}
	// NAMESPACE restricts BBR's ConfigMap cache (LoRA-to-base-model maps) to its own namespace;
	// the sandbox has no adapters, so gateways in other namespaces lose nothing. Its Role is then
	// namespaced, bound to the Deployment's ServiceAccount.
	sa := d.Spec.Template.Spec.ServiceAccountName
	if find(objs, "ServiceAccount", sa) == nil {
		t.Errorf("Deployment runs as ServiceAccount %q, which the chart does not render", sa)
	}
	if rb := find(objs, "RoleBinding", sa); rb == nil {
		t.Errorf("no RoleBinding for %s (ConfigMap reader)", sa)
	} else if subj, _, _ := unstructured.NestedSlice(rb.Object, "subjects"); len(subj) != 1 || subj[0].(map[string]any)["name"] != sa {
		t.Errorf("RoleBinding subjects %v, want ServiceAccount %s", subj, sa)
	}

	// What the modelharness (istio mode) sends to it.
	harness := renderEmbedded(t, "modelharness", "modelharness", "models", istioHarnessValues("models", true))
	bbrValues := chartValue(t, "modelharness", "istio", "bbr")
	svcName, svcNS := bbrValues["serviceName"].(string), bbrValues["serviceNamespace"].(string)
	port := toInt(t, bbrValues["port"])
	host := svcName + "." + svcNS + ".svc.cluster.local"
	if svcNS != BBRChart.Namespace {
		t.Errorf("modelharness looks for the router in %s, the catalogue installs it in %s", svcNS, BBRChart.Namespace)
	}
	svc := find(objs, "Service", svcName)
	if svc == nil {
		t.Fatalf("the chart renders no Service %s (modelharness' istio.bbr.serviceName)", svcName)
	}
	var service corev1.Service
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(svc.Object, &service); err != nil {
		t.Fatal(err)
	}
	var sp *corev1.ServicePort
	for i := range service.Spec.Ports {
		if int(service.Spec.Ports[i].Port) == port {
			sp = &service.Spec.Ports[i]
		}
	}
	switch {
	case sp == nil:
		t.Errorf("Service %s has no port %d: %+v", svcName, port, service.Spec.Ports)
	case sp.TargetPort.IntValue() != grpcPort:
		t.Errorf("Service port %d targets %s, BBR listens on %d", port, sp.TargetPort.String(), grpcPort)
	// Istio builds an HTTP/2 cluster (gRPC, and ALPN h2 when it originates TLS) only for a
	// port it knows is HTTP/2.
	case !(sp.AppProtocol != nil && (strings.EqualFold(*sp.AppProtocol, "HTTP2") || strings.EqualFold(*sp.AppProtocol, "grpc")) ||
		strings.HasPrefix(sp.Name, "grpc") || strings.HasPrefix(sp.Name, "http2")):
		t.Errorf("Service port %+v is not declared HTTP/2 or gRPC to Istio", *sp)
	}

	filter := find(harness, "EnvoyFilter", "bbr-ext-proc")
	if filter == nil {
		t.Fatal("modelharness renders no EnvoyFilter bbr-ext-proc")
	}
	patch := httpFilterPatch(t, filter)
	if cluster, _, _ := unstructured.NestedString(patch, "typed_config", "grpc_service", "envoy_grpc", "cluster_name"); cluster != fmt.Sprintf("outbound|%d||%s", port, host) {
		t.Errorf("EnvoyFilter cluster %q, want Istio's outbound cluster of the router's Service outbound|%d||%s", cluster, port, host)
	}
	mode, _, _ := unstructured.NestedStringMap(patch, "typed_config", "processing_mode")
	if streaming != (mode["request_body_mode"] == "FULL_DUPLEX_STREAMED") {
		t.Errorf("BBR runs with --streaming=%v, the EnvoyFilter sends the body %s", streaming, mode["request_body_mode"])
	}
	if mode["request_body_mode"] == "FULL_DUPLEX_STREAMED" && mode["request_trailer_mode"] != "SEND" {
		t.Errorf("full-duplex body needs request trailers SEND, got %q", mode["request_trailer_mode"])
	}
	// The chart's own istio wiring sends the same request side (it also sends the response side,
	// which BBR v1.5.0 passes through unchanged).
	istioObjs, err := RenderChart(chrt, BBRChart.Release, BBRChart.Namespace, mergeValues(BBRChart.Values(Values{}), map[string]any{"provider": map[string]any{"name": "istio"}}))
	if err != nil {
		t.Fatal(err)
	}
	requireValid(t, s, "body-based-routing (provider istio)", istioObjs)
	upstreamFilter := find(istioObjs, "EnvoyFilter", "body-based-router")
	if upstreamFilter == nil {
		t.Fatal("provider istio renders no EnvoyFilter")
	}
	upMode, _, _ := unstructured.NestedStringMap(httpFilterPatch(t, upstreamFilter), "typed_config", "processing_mode")
	for _, k := range []string{"request_header_mode", "request_body_mode", "request_trailer_mode"} {
		if mode[k] != upMode[k] {
			t.Errorf("processing_mode.%s %q, the chart's own istio wiring sends %q", k, mode[k], upMode[k])
		}
	}

	// TLS: BBR v1.5.0 serves its ext_proc over TLS with a self-signed certificate unless
	// --secure-serving=false. The gateway must then originate TLS without verifying, which the
	// chart's own istio wiring does with a DestinationRule; plaintext h2c fails the handshake.
	upTLS, _, _ := unstructured.NestedMap(find(istioObjs, "DestinationRule", "body-based-router").Object, "spec", "trafficPolicy", "tls")
	if secure && !reflect.DeepEqual(upTLS, map[string]any{"mode": "SIMPLE", "insecureSkipVerify": true}) {
		t.Errorf("the chart's own istio wiring changed: DestinationRule TLS %v", upTLS)
	}
	var tls map[string]any
	for _, o := range harness {
		if o.GetKind() != "DestinationRule" {
			continue
		}
		if h, _, _ := unstructured.NestedString(o.Object, "spec", "host"); h != host {
			continue
		}
		// A DestinationRule applies to the gateway pods from their own namespace, or from the
		// router's namespace when exported to them.
		export, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "exportTo")
		if o.GetNamespace() != "models" && o.GetNamespace() != svcNS {
			t.Errorf("DestinationRule %s/%s is neither in the gateway's nor the router's namespace", o.GetNamespace(), o.GetName())
		} else if o.GetNamespace() == svcNS && len(export) > 0 && !slices.Contains(export, "*") && !slices.Contains(export, "models") {
			t.Errorf("DestinationRule %s/%s is not exported to the gateway's namespace: %v", o.GetNamespace(), o.GetName(), export)
		}
		tls, _, _ = unstructured.NestedMap(o.Object, "spec", "trafficPolicy", "tls")
	}
	switch {
	case secure && tls == nil:
		t.Errorf("BBR serves TLS (--secure-serving defaults to true in %s, args %q), but modelharness sends plaintext to %s: no DestinationRule originates TLS", versions.InferenceExtension, c.Args, host)
	case secure && !reflect.DeepEqual(tls, upTLS):
		t.Errorf("modelharness' TLS to the router %v, the chart's own istio wiring %v", tls, upTLS)
	case !secure && tls != nil && tls["mode"] != "DISABLE":
		t.Errorf("BBR serves plaintext, modelharness originates TLS %v", tls)
	}

	// Turning TLS off instead is not possible through the chart: bbr.flags renders each flag
	// and its value as two arguments, and a bool flag followed by a separate "false" stays true.
	off, err := RenderChart(chrt, BBRChart.Release, BBRChart.Namespace, mergeValues(BBRChart.Values(Values{}), map[string]any{"bbr": map[string]any{"flags": map[string]any{"secure-serving": false}}}))
	if err != nil {
		t.Fatal(err)
	}
	if secure, _, _, _ := bbrFlags(t, deploymentOf(t, off, "body-based-router").Spec.Template.Spec.Containers[0].Args); !secure {
		t.Error("bbr.flags can turn secure serving off after all; the catalogue could serve plaintext instead")
	}
	plain := renderEmbedded(t, "modelharness", "modelharness", "models", mergeValues(istioHarnessValues("models", true), map[string]any{"istio": map[string]any{"bbr": map[string]any{"tls": false}}}))
	if find(plain, "DestinationRule", "bbr-tls") != nil {
		t.Error("istio.bbr.tls=false still originates TLS to the router")
	}
}

// httpFilterPatch returns the value of an EnvoyFilter's HTTP_FILTER patch.
func httpFilterPatch(t *testing.T, f *unstructured.Unstructured) map[string]any {
	t.Helper()
	patches, _, _ := unstructured.NestedSlice(f.Object, "spec", "configPatches")
	for _, p := range patches {
		pm := p.(map[string]any)
		if pm["applyTo"] == "HTTP_FILTER" {
			v, _, _ := unstructured.NestedMap(pm, "patch", "value")
			return v
		}
	}
	t.Fatalf("EnvoyFilter %s has no HTTP_FILTER patch", f.GetName())
	return nil
}

// chartValue is a map of an embedded chart's default values (JSON numbers: float64).
func chartValue(t *testing.T, chartName string, path ...string) map[string]any {
	t.Helper()
	harness, err := helm.LoadChart(manifests.Charts, chartName)
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := unstructured.NestedMap(harness.Values, path...)
	if !ok || err != nil {
		t.Fatalf("%s values have no %s: %v", chartName, strings.Join(path, "."), err)
	}
	return m
}

func toInt(t *testing.T, v any) int {
	t.Helper()
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

func mergeValues(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// KEDA's own chart rendered with the catalogue's values. The proxy has the chart at 2.20.2 only
// (the nearest to the pinned 2.19.0), so this renders 2.20.2.
func TestKEDAChartRendersWithCatalogueValues(t *testing.T) {
	s := loadSchemas(t)
	chrt := moduleChart(t, kedaChartsModule, kedaChartsVersion, "keda")
	t.Logf("rendering keda chart %s (pinned: %s)", chrt.Metadata.Version, versions.KEDAChart)
	objs := renderUpstreamChart(t, s, KEDAChart, chrt)

	var deployments []string
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployments = append(deployments, o.GetName())
		}
	}
	for _, comp := range UpstreamComponents(DefaultSystemNamespace) {
		if comp.Namespace == UpstreamKEDANamespace && comp.Deployment != "keda-kaito-scaler" && !slices.Contains(deployments, comp.Deployment) {
			t.Errorf("`status` watches Deployment %s, the chart renders %v", comp.Deployment, deployments)
		}
	}
	if !slices.Contains(deployments, "keda-operator") {
		t.Errorf("scalerTrusted restarts Deployment keda-operator, the chart renders %v", deployments)
	}
	for _, name := range deployments {
		d := deploymentOf(t, objs, name)
		if d.Namespace != UpstreamKEDANamespace {
			t.Errorf("Deployment %s in %q, not %s", name, d.Namespace, UpstreamKEDANamespace)
		}
		for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
			if c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("%s/%s imagePullPolicy %q: kind nodes have the image preloaded and no registry, want IfNotPresent", name, c.Name, c.ImagePullPolicy)
			}
			if want := ":" + chrt.Metadata.AppVersion; !strings.HasPrefix(c.Image, "ghcr.io/kedacore/") || !strings.HasSuffix(c.Image, want) {
				t.Errorf("%s/%s image %s, want ghcr.io/kedacore/…%s (the chart's appVersion)", name, c.Name, c.Image, want)
			}
		}
	}
	for _, crd := range []string{"scaledobjects.keda.sh", "triggerauthentications.keda.sh", "clustertriggerauthentications.keda.sh"} {
		if find(objs, "CustomResourceDefinition", crd) == nil {
			t.Errorf("the chart installs no CRD %s (modeldeployment's ScaledObject, keda-kaito-scaler's ClusterTriggerAuthentication)", crd)
		}
	}
}
