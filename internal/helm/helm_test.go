package helm

import (
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/manifests"
)

func TestModelharnessRendersOfflineHarness(t *testing.T) {
	c, err := LoadChart(manifests.Charts, "modelharness")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(c, "modelharness", "models", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, o := range objs {
		kinds[o.GetKind()+"/"+o.GetName()] = o.GetNamespace()
		if o.GetLabels()["kaito.sh/owned-by"] != "modelharness" {
			t.Errorf("%s/%s lacks the ownership label", o.GetKind(), o.GetName())
		}
	}
	for key, ns := range map[string]string{
		"Gateway/models-gw":                                "models",
		"HTTPRoute/model-not-found-route":                  "models",
		"ReferenceGrant/allow-model-not-found-from-models": "sandbox-system",
		"APIKey/default":                                   "models",
	} {
		got, ok := kinds[key]
		if !ok {
			t.Errorf("missing %s in:\n%s", key, out)
		} else if got != ns {
			t.Errorf("%s in namespace %q, want %q", key, got, ns)
		}
	}
	if !strings.Contains(out, "gatewayClassName: sandbox") {
		t.Error("gateway class is not sandbox")
	}
}

func TestModelharnessSchemaRejectsBadValues(t *testing.T) {
	c, err := LoadChart(manifests.Charts, "modelharness")
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{
		"unknown key":     {"gatewayClass": "istio"},
		"port too large":  {"gatewayPort": 70000},
		"port not number": {"gatewayPort": "80"},
		"empty class":     {"gatewayClassName": ""},
		"bad namespace":   {"namespace": "Models!"},
		"auth not bool":   {"auth": map[string]any{"enabled": "yes"}},
		"bad auth mode":   {"auth": map[string]any{"enabled": true, "mode": "oauth"}},
	} {
		if _, err := Render(c, "modelharness", "models", vals); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "invalid values") {
			t.Errorf("%s: error does not say the values are invalid: %v", name, err)
		}
	}
}
