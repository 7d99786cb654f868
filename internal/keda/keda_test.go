package keda

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/inference-sandbox/sandbox/internal/pki"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

func TestCRDsFromModuleCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, err := CRDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"scaledobjects.keda.sh", "clustertriggerauthentications.keda.sh", "triggerauthentications.keda.sh", "scaledjobs.keda.sh"} {
		if !strings.Contains(got, want) {
			t.Errorf("CRD %s missing from %s", want, got)
		}
	}
}

func TestManifestsRender(t *testing.T) {
	v := Values{Image: "sandbox-keda:test", StackdImage: "stackd:test"}
	objs, err := Render("keda.yaml", v)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "APIService" {
			if o.GetName() != APIServiceName {
				t.Errorf("APIService named %s", o.GetName())
			}
			if ns := o.Object["spec"].(map[string]any)["service"].(map[string]any)["namespace"]; ns != DefaultNamespace {
				t.Errorf("APIService service namespace %v", ns)
			}
		}
	}
	if kinds["Deployment"] != 2 || kinds["APIService"] != 1 || kinds["Service"] != 2 {
		t.Errorf("keda.yaml objects: %v", kinds)
	}
	objs, err = Render("scaler.yaml", v)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
			if len(args) == 0 || args[0] != "scaler" || !slices.Contains(args, "--timing=fast") {
				t.Errorf("scaler args %q", args)
			}
		}
		if o.GetNamespace() != "" && o.GetNamespace() != DefaultNamespace {
			t.Errorf("%s %s in namespace %s", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
}

func TestSharedCertificateServesBothServices(t *testing.T) {
	ca, err := pki.NewCA("KEDA", time.Hour*24*400)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("keda-operator", certNames("keda"), pki.Server|pki.Client, time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}
	if !certsValid(data, "keda") {
		t.Fatal("fresh certificates judged invalid")
	}
	if certsValid(data, "other") {
		t.Fatal("certificates for namespace keda accepted for namespace other")
	}
}

func TestImageNameIsStable(t *testing.T) {
	a, b := ImageName(), ImageName()
	if a != b || !strings.HasPrefix(a, Repository+":"+Version+"-") {
		t.Fatalf("image names %s, %s", a, b)
	}
}

// TestEnsureImage builds (or reuses) the real KEDA image. It takes minutes on a cold cache,
// so it runs only when asked: SANDBOX_TEST_KEDA_IMAGE=1.
func TestEnsureImage(t *testing.T) {
	if os.Getenv("SANDBOX_TEST_KEDA_IMAGE") == "" {
		t.Skip("set SANDBOX_TEST_KEDA_IMAGE=1 to build the KEDA image")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	image, err := Ensure(ctx, BuildOptions{Status: progress.New(os.Stderr)})
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"/keda", "/keda-adapter"} {
		// Both binaries must start in the scratch image: --help exits without a cluster.
		out, _ := exec.CommandContext(ctx, "docker", "run", "--rm", "--entrypoint", bin, image, "--help").CombinedOutput()
		if !strings.Contains(string(out), "--") {
			t.Errorf("%s --help in %s printed: %s", bin, image, out)
		}
	}
}
