package status

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/observe"
)

// status lists the components of the profile the cluster actually runs, read from a real
// kube-apiserver: offline until istiod appears.
func TestProfileDecidesTheComponents(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apiservertest.Start(t, nil))
	ctx := context.Background()
	profile, err := profileOf(ctx, cs)
	if err != nil || profile != profileOffline {
		t.Fatalf("empty cluster: profile %q, %v; want offline", profile, err)
	}
	if !hasDeployment(components(profile), "models", "models-gw-sandbox") || hasDeployment(components(profile), addons.IstioNamespace, "istiod") {
		t.Fatalf("offline components: %+v", components(profile))
	}

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: addons.IstioNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "istiod"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: addons.IstioNamespace}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "istio/pilot"}}}},
	}}
	if _, err := cs.AppsV1().Deployments(addons.IstioNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	profile, err = profileOf(ctx, cs)
	if err != nil || profile != profileUpstream {
		t.Fatalf("with istiod: profile %q, %v; want upstream", profile, err)
	}
	if !hasDeployment(components(profile), addons.IstioNamespace, "istiod") || !hasDeployment(components(profile), "models", "models-gw-istio") {
		t.Fatalf("upstream components: %+v", components(profile))
	}
}

func hasDeployment(refs []observe.ComponentRef, ns, name string) bool {
	for _, r := range refs {
		if r.Namespace == ns && r.Deployment == name {
			return true
		}
	}
	return false
}
