package authz

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/manifests"
)

// The shipped CRD must describe the Go type the operator reads and writes, or the API server
// would prune the status the operator sets.
func TestCRDMatchesTheGoType(t *testing.T) {
	raw, err := fs.ReadFile(manifests.CRDs, "kaito.sh_apikeys.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		t.Fatal(err)
	}
	if crd.Name != "apikeys.kaito.sh" || crd.Spec.Group != GroupVersion.Group || crd.Spec.Names.Kind != "APIKey" ||
		crd.Spec.Names.Plural != "apikeys" || crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
		t.Errorf("identity = %s %s %s %s %s", crd.Name, crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Names.Plural, crd.Spec.Scope)
	}
	if len(crd.Spec.Versions) != 1 {
		t.Fatalf("%d versions", len(crd.Spec.Versions))
	}
	v := crd.Spec.Versions[0]
	if v.Name != GroupVersion.Version || !v.Served || !v.Storage || v.Subresources == nil || v.Subresources.Status == nil {
		t.Errorf("version %s served=%v storage=%v subresources=%v", v.Name, v.Served, v.Storage, v.Subresources)
	}
	status := v.Schema.OpenAPIV3Schema.Properties["status"]
	for _, f := range jsonFields(reflect.TypeOf(APIKeyStatus{})) {
		if _, ok := status.Properties[f]; !ok {
			t.Errorf("status.%s is written by the operator but missing from the schema", f)
		}
	}
	spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
	if spec.Type != "object" {
		t.Errorf("spec type = %q", spec.Type)
	}
	// `spec: {}` must be valid, as modelharness renders it.
	if len(spec.Required) > 0 {
		t.Errorf("spec requires %v", spec.Required)
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}
