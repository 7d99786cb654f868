package crds

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/manifests"
)

func TestVersionMatchesGoMod(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), GatewayAPIModule+" "+GatewayAPIVersion) {
		t.Errorf("go.mod does not require %s %s; update GatewayAPIVersion with it", GatewayAPIModule, GatewayAPIVersion)
	}
}

func TestGatewayAPIStandardCRDs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files, err := GatewayAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		for _, crd := range decodeCRDs(t, f.Data) {
			if crd.Annotations["gateway.networking.k8s.io/channel"] != "standard" ||
				crd.Annotations["gateway.networking.k8s.io/bundle-version"] != GatewayAPIVersion {
				t.Errorf("%s: channel/version annotations %v", f.Name, crd.Annotations)
			}
			kinds[crd.Spec.Names.Kind] = true
		}
	}
	for _, k := range []string{"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "GRPCRoute"} {
		if !kinds[k] {
			t.Errorf("standard channel lacks %s (have %v)", k, kinds)
		}
	}
}

func TestInferencePoolCRD(t *testing.T) {
	data, err := fs.ReadFile(manifests.CRDs, "inference.networking.k8s.io_inferencepools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds := decodeCRDs(t, data)
	if len(crds) != 1 || crds[0].Spec.Group != "inference.networking.k8s.io" || crds[0].Spec.Versions[0].Name != "v1" {
		t.Fatalf("unexpected CRD: %+v", crds)
	}
	spec := crds[0].Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	ref := spec.Properties["endpointPickerRef"]
	if string(ref.Properties["failureMode"].Default.Raw) != `"FailClose"` || spec.Properties["targetPorts"].MaxItems == nil ||
		*spec.Properties["targetPorts"].MaxItems != 8 {
		t.Errorf("defaults/limits differ from the API: failureMode default %s", ref.Properties["failureMode"].Default.Raw)
	}
}

func decodeCRDs(t *testing.T, data []byte) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var out []apiextensionsv1.CustomResourceDefinition
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var head struct{ Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		if head.Kind != "CustomResourceDefinition" {
			continue
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
			t.Fatalf("decoding a CRD: %v", err)
		}
		out = append(out, crd)
	}
	return out
}
