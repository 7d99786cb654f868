package addons

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/keda"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"github.com/inference-sandbox/sandbox/manifests"
)

// schemas validates objects the way the API server does before storing them: built-in kinds by
// strict decoding into their Go types (unknown fields are errors), custom resources by their
// CRD's OpenAPI schema, unknown-field pruning, defaulting and CEL rules. The CRDs are the real
// ones, read from the Go module cache at test time and never copied into this repository.
type schemas struct {
	crds map[schema.GroupKind]*apiextensionsv1.CustomResourceDefinition
}

func (s *schemas) add(t *testing.T, source string, objs []*unstructured.Unstructured) {
	t.Helper()
	n := 0
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, crd); err != nil {
			t.Fatalf("%s: CRD %s: %v", source, o.GetName(), err)
		}
		s.crds[schema.GroupKind{Group: crd.Spec.Group, Kind: crd.Spec.Names.Kind}] = crd
		n++
	}
	if n == 0 {
		t.Fatalf("%s: no CRDs", source)
	}
}

func istioModuleDir(t *testing.T) string {
	t.Helper()
	dir, err := crds.ModuleDir(context.Background(), "istio.io/istio", versions.IstioModule)
	if err != nil {
		t.Skipf("istio.io/istio not in the module cache and not downloadable: %v", err)
	}
	return dir
}

func decodeFile(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

// loadSchemas gathers the CRDs every upstream object is checked against: Gateway API
// (sigs.k8s.io/gateway-api), Istio (istio.io/istio's base chart files), KEDA
// (github.com/kedacore/keda/v2), the Inference Extension's InferencePool
// (sigs.k8s.io/gateway-api-inference-extension at the pinned release, this repository's own
// when that cannot be downloaded), and this repository's APIKey and InferenceSet CRDs: the
// KAITO and llm-gateway-auth modules are not served by the module proxy, so their real CRDs
// are only checked by the e2e dry-run of the upstream profile's install.
func loadSchemas(t *testing.T) *schemas {
	t.Helper()
	s := &schemas{crds: map[schema.GroupKind]*apiextensionsv1.CustomResourceDefinition{}}
	gw, err := gatewayAPIObjects(context.Background())
	if err != nil {
		t.Skipf("Gateway API CRDs: %v", err)
	}
	s.add(t, "sigs.k8s.io/gateway-api", gw)
	s.add(t, "istio.io/istio", decodeFile(t, filepath.Join(istioModuleDir(t), "manifests/charts/base/files/crd-all.gen.yaml")))
	kedaCRDs, err := keda.CRDs(context.Background())
	if err != nil {
		t.Skipf("KEDA CRDs: %v", err)
	}
	s.add(t, "github.com/kedacore/keda/v2", kedaCRDs)
	own, err := fs.Glob(manifests.CRDs, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range own {
		data, _ := fs.ReadFile(manifests.CRDs, name)
		objs, err := kube.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		s.add(t, name, objs)
	}
	ie, err := crds.InferenceExtension(context.Background())
	if err != nil {
		t.Skipf("Inference Extension CRDs: %v", err)
	}
	for _, f := range ie {
		objs, err := kube.Decode(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		s.add(t, f.Name, objs)
	}
	return s
}

// aggregatorKinds are built-in kinds that client-go's scheme lacks: the aggregator's APIService
// (KEDA's metrics server registers one). k8s.io/kube-aggregator is not a dependency, so its v1
// type is spelled out below, field for field, for the strict decoding.
var aggregatorKinds = map[schema.GroupVersionKind]func() runtime.Object{
	{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"}: func() runtime.Object { return &apiService{} },
}

type apiService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Service *struct {
			Namespace string `json:"namespace,omitempty"`
			Name      string `json:"name,omitempty"`
			Port      *int32 `json:"port,omitempty"`
		} `json:"service,omitempty"`
		Group                 string `json:"group,omitempty"`
		Version               string `json:"version,omitempty"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify,omitempty"`
		CABundle              []byte `json:"caBundle,omitempty"`
		GroupPriorityMinimum  int32  `json:"groupPriorityMinimum"`
		VersionPriority       int32  `json:"versionPriority"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions,omitempty"`
	} `json:"status,omitempty"`
}

func (a *apiService) DeepCopyObject() runtime.Object {
	c := *a
	return &c
}

// validate returns every reason the API server would reject or silently change obj.
func (s *schemas) validate(obj *unstructured.Unstructured) []string {
	gvk := obj.GroupVersionKind()
	if crd, ok := s.crds[gvk.GroupKind()]; ok {
		return validateCustom(crd, obj)
	}
	if obj.GetKind() == "CustomResourceDefinition" {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, crd, true); err != nil {
			return []string{err.Error()}
		}
		return nil
	}
	typed, err := scheme.Scheme.New(gvk)
	if newTyped, ok := aggregatorKinds[gvk]; ok {
		typed, err = newTyped(), nil
	}
	if err != nil {
		return []string{fmt.Sprintf("no schema for %s (neither built in nor a known CRD)", gvk)}
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, typed, true); err != nil {
		return []string{err.Error()}
	}
	return nil
}

func validateCustom(crd *apiextensionsv1.CustomResourceDefinition, obj *unstructured.Unstructured) []string {
	version := obj.GroupVersionKind().Version
	var v *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Name == version {
			v = &crd.Spec.Versions[i]
		}
	}
	if v == nil || !v.Served {
		return []string{fmt.Sprintf("CRD %s does not serve version %s", crd.Name, version)}
	}
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil
	}
	internal := &apiextensionsinternal.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
		return []string{err.Error()}
	}
	structural, err := structuralschema.NewStructural(internal)
	if err != nil {
		return []string{"CRD schema: " + err.Error()}
	}
	if crd.Spec.Scope == apiextensionsv1.NamespaceScoped && obj.GetNamespace() == "" {
		return []string{"namespaced kind without a namespace"}
	}
	if crd.Spec.Scope == apiextensionsv1.ClusterScoped && obj.GetNamespace() != "" {
		return []string{"cluster-scoped kind with a namespace"}
	}
	var problems []string
	// What the API server would drop: a field the author meant that the CRD does not know.
	copied := runtime.DeepCopyJSONValue(obj.Object)
	unknown := pruning.PruneWithOptions(copied, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, path := range unknown {
		problems = append(problems, "unknown field "+path)
	}
	defaulting.Default(copied, structural)
	validator, _, err := validation.NewSchemaValidator(internal)
	if err != nil {
		return append(problems, err.Error())
	}
	for _, e := range validation.ValidateCustomResource(nil, copied, validator) {
		problems = append(problems, e.Error())
	}
	errs, _ := cel.NewValidator(structural, true, celconfig.PerCallLimit).Validate(context.Background(), nil, structural, copied, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	return problems
}

// requireValid fails for every object the API server would not store as written.
func requireValid(t *testing.T, s *schemas, source string, objs []*unstructured.Unstructured) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatalf("%s rendered nothing", source)
	}
	for _, o := range objs {
		for _, p := range s.validate(o) {
			t.Errorf("%s: %s %s/%s: %s", source, o.GetKind(), o.GetNamespace(), o.GetName(), p)
		}
	}
}

// The validator itself must catch what the API server catches, or the tests prove nothing.
func TestSchemaValidatorRejectsBadObjects(t *testing.T) {
	s := loadSchemas(t)
	for name, doc := range map[string]string{
		"Gateway without listeners": `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g, namespace: ns1}
spec: {gatewayClassName: istio}`,
		"Gateway with an unknown field": `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g, namespace: ns1}
spec: {gatewayClassName: istio, listenerz: [], listeners: [{name: http, port: 80, protocol: HTTP}]}`,
		"HTTPRoute header match with a bad type (enum)": `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns1}
spec: {rules: [{matches: [{headers: [{type: Fuzzy, name: x, value: y}]}]}]}`,
		"EnvoyFilter with an unknown operation": `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: f, namespace: ns1}
spec: {configPatches: [{applyTo: HTTP_FILTER, patch: {operation: INSERT_SOMEWHERE}}]}`,
		"ConfigMap with an unknown field": `apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: ns1}
datta: {a: b}`,
		"ScaledObject without a target": `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: s, namespace: ns1}
spec: {triggers: []}`,
		"APIService with an unknown field": `apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec: {group: external.metrics.k8s.io, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100, servce: {name: m, namespace: keda}}`,
		"unknown kind": `apiVersion: example.com/v1
kind: Widget
metadata: {name: w}`,
	} {
		objs, err := kube.Decode([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if problems := s.validate(objs[0]); len(problems) == 0 {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %s", name, strings.Join(problems, "; "))
		}
	}
	good, _ := kube.Decode([]byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g, namespace: ns1}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}`))
	if p := s.validate(good[0]); len(p) > 0 {
		t.Errorf("a valid Gateway rejected: %v", p)
	}
}
