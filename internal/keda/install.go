package keda

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/pki"
	"github.com/inference-sandbox/sandbox/manifests"
)

// DefaultNamespace is KEDA's namespace, as upstream's chart installs it; the scaler must
// share it (facts §2.2).
const DefaultNamespace = "keda"

// CertSecretName holds KEDA's CA and the certificate its operator and adapter share.
const CertSecretName = "kedaorg-certs"

// APIServiceName is the external-metrics API that only one adapter in a cluster can own.
const APIServiceName = "v1beta1.external.metrics.k8s.io"

// Values parameterise keda.yaml and scaler.yaml.
type Values struct {
	// Namespace of KEDA and the scaler; DefaultNamespace when empty.
	Namespace string
	// Image is the KEDA image from Ensure.
	Image string
	// StackdImage runs the scaler.
	StackdImage string
	// ScalerTiming is the scaler's --timing: "fast" (the default here, a demo scales in
	// seconds) or "upstream" (keda-kaito-scaler v0.5's minutes).
	ScalerTiming string
}

func (v Values) withDefaults() Values {
	if v.Namespace == "" {
		v.Namespace = DefaultNamespace
	}
	if v.ScalerTiming == "" {
		v.ScalerTiming = "fast"
	}
	return v
}

// CRDs returns KEDA's CustomResourceDefinitions, read from the KEDA module in the Go module
// cache (downloaded through the proxy when missing) so they always match the built binaries.
func CRDs(ctx context.Context) ([]*unstructured.Unstructured, error) {
	dir, err := crds.ModuleDir(ctx, Module, Version)
	if err != nil {
		return nil, err
	}
	bases := filepath.Join(dir, "config", "crd", "bases")
	entries, err := os.ReadDir(bases)
	if err != nil {
		return nil, fmt.Errorf("reading KEDA's CRDs: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(bases, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		objs, err := kube.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				out = append(out, o)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CRDs in %s", bases)
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// Install applies KEDA: its CRDs, the namespace, the certificates (made on first install and
// kept while valid) and keda.yaml. Safe to run again.
func Install(ctx context.Context, c *kube.Client, v Values) error {
	v = v.withDefaults()
	if v.Image == "" {
		return fmt.Errorf("no KEDA image: call keda.Ensure first")
	}
	crdObjs, err := CRDs(ctx)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, crdObjs); err != nil {
		return fmt.Errorf("applying KEDA CRDs: %w", err)
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(v.Namespace)
	if err := c.ApplyObject(ctx, ns); err != nil {
		return err
	}
	certs, err := ensureCerts(ctx, c, v.Namespace)
	if err != nil {
		return fmt.Errorf("KEDA certificates: %w", err)
	}
	objs, err := render("keda.yaml", templateValues(v, certs))
	if err != nil {
		return err
	}
	return c.Apply(ctx, objs)
}

// Ready waits until the operator and the adapter run and the API server reports the
// external-metrics APIService Available (it can reach the adapter and trusts it).
func Ready(ctx context.Context, c *kube.Client, v Values) error {
	v = v.withDefaults()
	if err := waitCRDs(ctx, c); err != nil {
		return err
	}
	for _, d := range []string{"keda-operator", "keda-operator-metrics-apiserver"} {
		if err := c.WaitDeployment(ctx, v.Namespace, d, 3*time.Minute); err != nil {
			return err
		}
	}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	return kube.WaitFor(ctx, 2*time.Minute, time.Second, "APIService "+APIServiceName, func(ctx context.Context) (bool, string, error) {
		as, err := c.Dynamic.Resource(gvr).Get(ctx, APIServiceName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return condition(as, "Available")
	})
}

// InstallScaler applies scaler.yaml (the offline keda-kaito-scaler). KEDA's CRDs must exist.
func InstallScaler(ctx context.Context, c *kube.Client, v Values) error {
	v = v.withDefaults()
	if v.StackdImage == "" {
		return fmt.Errorf("no stackd image for the scaler")
	}
	objs, err := render("scaler.yaml", templateValues(v, nil))
	if err != nil {
		return err
	}
	return c.Apply(ctx, objs)
}

// ScalerReady waits for the scaler to have its certificates and caches and serve.
func ScalerReady(ctx context.Context, c *kube.Client, v Values) error {
	v = v.withDefaults()
	return c.WaitDeployment(ctx, v.Namespace, "keda-kaito-scaler", 3*time.Minute)
}

type tmplValues struct {
	Namespace, Image, StackdImage, ScalerTiming, Version string
	CABundle, CertsHash                                  string
}

func templateValues(v Values, certs map[string][]byte) tmplValues {
	t := tmplValues{Namespace: v.Namespace, Image: v.Image, StackdImage: v.StackdImage, ScalerTiming: v.ScalerTiming, Version: Version}
	if certs != nil {
		t.CABundle = base64.StdEncoding.EncodeToString(certs["ca.crt"])
		sum := sha256.Sum256(append(append([]byte{}, certs["ca.crt"]...), certs["tls.crt"]...))
		t.CertsHash = hex.EncodeToString(sum[:])[:16]
	}
	return t
}

// Render executes one of this package's manifest templates (keda.yaml, scaler.yaml).
func Render(name string, v Values) ([]*unstructured.Unstructured, error) {
	v = v.withDefaults()
	return render(name, templateValues(v, map[string][]byte{"ca.crt": []byte("test-ca"), "tls.crt": []byte("test")}))
}

func render(name string, v tmplValues) ([]*unstructured.Unstructured, error) {
	return kube.RenderObjects(manifests.Offline, name, v)
}

// certNames are the Services whose names the shared certificate carries: the operator's
// gRPC metrics service (dialled by the adapter) and the adapter (dialled by the API server).
func certNames(namespace string) []string {
	var names []string
	for _, svc := range []string{"keda-operator", "keda-operator-metrics-apiserver"} {
		base := svc + "." + namespace
		names = append(names, svc, base, base+".svc", base+".svc.cluster.local")
	}
	return names
}

// ensureCerts keeps the Secret's certificates while they chain, name both Services and last
// another 30 days; otherwise it issues new ones (and the pods restart through the hash
// annotation). The operator and adapter use one certificate both as server and as client
// of each other, so it carries both usages.
func ensureCerts(ctx context.Context, c *kube.Client, namespace string) (map[string][]byte, error) {
	secrets := c.Clientset.CoreV1().Secrets(namespace)
	cur, err := secrets.Get(ctx, CertSecretName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, CertSecretName, err)
	}
	if err == nil && certsValid(cur.Data, namespace) {
		return cur.Data, nil
	}
	ca, err := pki.NewCA("KEDA", 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue("keda-operator", certNames(namespace), pki.Server|pki.Client, 5*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CertSecretName, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "keda-operator"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if cur != nil && cur.Name != "" {
		sec.ResourceVersion = cur.ResourceVersion
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: kube.FieldManager})
	} else {
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: kube.FieldManager})
	}
	if err != nil {
		return nil, fmt.Errorf("writing Secret %s/%s: %w", namespace, CertSecretName, err)
	}
	return data, nil
}

func certsValid(data map[string][]byte, namespace string) bool {
	for _, name := range []string{"keda-operator." + namespace + ".svc.cluster.local", "keda-operator-metrics-apiserver." + namespace + ".svc"} {
		if pki.Valid(data["tls.crt"], data["ca.crt"], pki.Server, name, 30*24*time.Hour) != nil {
			return false
		}
	}
	return pki.Valid(data["tls.crt"], data["ca.crt"], pki.Client, "", 30*24*time.Hour) == nil
}

func waitCRDs(ctx context.Context, c *kube.Client) error {
	objs, err := CRDs(ctx)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	return kube.WaitFor(ctx, time.Minute, 500*time.Millisecond, "KEDA CRDs", func(ctx context.Context) (bool, string, error) {
		for _, o := range objs {
			crd, err := c.Dynamic.Resource(gvr).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if ok, why, _ := condition(crd, "Established"); !ok {
				return false, "CRD " + o.GetName() + ": " + why, nil
			}
		}
		return true, "", nil
	})
}

// condition reports whether obj's status condition of type t is True, and why not.
func condition(obj *unstructured.Unstructured, t string) (bool, string, error) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t {
			if m["status"] == "True" {
				return true, "", nil
			}
			return false, fmt.Sprintf("%s=%v: %v %v", t, m["status"], m["reason"], m["message"]), nil
		}
	}
	return false, "no " + t + " condition yet", nil
}
