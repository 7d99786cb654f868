package addons_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// An upstream chart is installed, then upgraded, through the Helm SDK against a real
// kube-apiserver, and what the cluster stores never pulls on its own.
func TestInstallChartOnARealAPIServer(t *testing.T) {
	cfg := apiservertest.Start(t, nil)
	kubeconfig := writeKubeconfig(t, cfg)
	client, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A CronJob carries a pod template Helm does not wait for (nothing runs pods here).
	chrt := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: "v2", Name: "demo", Version: "0.1.0"},
		Values:   map[string]any{"image": "registry.example/demo:1.0"},
		Templates: []*chart.File{{Name: "templates/cronjob.yaml", Data: []byte(`apiVersion: batch/v1
kind: CronJob
metadata: {name: demo, namespace: {{ .Release.Namespace }}}
spec:
  schedule: "0 0 1 1 *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: demo, image: {{ .Values.image | quote }}, imagePullPolicy: Always}]
`)}},
	}
	c := addons.UpstreamChart{Release: "demo", Namespace: "demo-system", Chart: "demo", Version: "0.1.0",
		Values: func(addons.Values) map[string]any { return map[string]any{"image": "registry.example/demo:1.1"} }}
	env := &addons.Env{Client: client, Status: progress.New(os.Stderr), Values: addons.Values{Kubeconfig: kubeconfig}}
	for round := 1; round <= 2; round++ { // install, then upgrade
		if err := addons.InstallChart(context.Background(), env, c, chrt); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	cj, err := cs.BatchV1().CronJobs("demo-system").Get(context.Background(), "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
	if ctr.Image != "registry.example/demo:1.1" || ctr.ImagePullPolicy != "IfNotPresent" {
		t.Errorf("stored container %s pulls %s; want the install values' image, never pulled by the node", ctr.Image, ctr.ImagePullPolicy)
	}
	secrets, err := cs.CoreV1().Secrets("demo-system").List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=demo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 2 {
		t.Errorf("%d Helm revisions, want 2 (install, upgrade)", len(secrets.Items))
	}
}
