package crds

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
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

func TestDefinitions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files, err := GatewayAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Errorf("standard channel has %d files", len(files))
	}
	defs, err := Definitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, crd := range defs {
		kinds[crd.Spec.Names.Kind] = true
		if crd.Spec.Group == "gateway.networking.k8s.io" && (crd.Annotations["gateway.networking.k8s.io/channel"] != "standard" ||
			crd.Annotations["gateway.networking.k8s.io/bundle-version"] != GatewayAPIVersion) {
			t.Errorf("%s: channel/version annotations %v", crd.Name, crd.Annotations)
		}
		if crd.Spec.Names.Kind != "InferencePool" {
			continue
		}
		spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
		ref := spec.Properties["endpointPickerRef"]
		if crd.Spec.Group != "inference.networking.k8s.io" || crd.Spec.Versions[0].Name != "v1" ||
			string(ref.Properties["failureMode"].Default.Raw) != `"FailClose"` || *spec.Properties["targetPorts"].MaxItems != 8 {
			t.Errorf("InferencePool CRD differs from the v1 API: %+v", crd.Spec)
		}
	}
	for _, k := range []string{"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "GRPCRoute", "InferencePool", "InferenceObjective"} {
		if !kinds[k] {
			t.Errorf("no %s CRD (have %v)", k, kinds)
		}
	}
}
