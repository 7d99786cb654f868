//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/util/intstr"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// TestPodNetwork checks the node image's pod network across nodes: one HTTP server pod per
// worker (stackd notfound, from the sandbox's own image), reached from the control-plane
// node through the API server's proxy, by pod IP and through a ClusterIP Service.
func TestPodNetwork(t *testing.T) {
	const ns, name = "default", "netcheck"
	f := features.New("pod network across nodes").
		WithLabel("tier", "pr").WithLabel("area", "cluster").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			labels := map[string]string{"app": name}
			d := stackdDeployment(ns, name, int32(sb.Workers), []string{"notfound", "--port", "8080"}, 8080, nil)
			// one pod per worker
			d.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					TopologyKey:   "kubernetes.io/hostname",
				}},
			}}
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intOrPort(8080)}}},
			}
			if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return ctx
		}).
		Assess("the control plane reaches a pod on every worker, and the Service", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			var pods []corev1.Pod
			eventually(t, 2*time.Minute, "one ready netcheck pod per worker", func() (bool, string) {
				list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
				if err != nil {
					return false, err.Error()
				}
				pods = pods[:0]
				nodes := map[string]bool{}
				for _, p := range list.Items {
					if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
						pods = append(pods, p)
						nodes[p.Spec.NodeName] = true
					}
				}
				return len(nodes) == sb.Workers, fmt.Sprintf("%d running pods on %d nodes", len(pods), len(nodes))
			})
			// notfound answers every path with the OpenAI 400 invalid_request_body JSON
			for _, p := range pods {
				eventually(t, 30*time.Second, "pod "+p.Name+" on "+p.Spec.NodeName+" reachable", func() (bool, string) {
					body, err := cs.CoreV1().Pods(ns).ProxyGet("http", p.Name, "8080", "/v1/chat/completions", nil).DoRaw(ctx)
					return strings.Contains(string(body), "invalid_request_body"), fmt.Sprintf("%v %s", err, body)
				})
			}
			eventually(t, 30*time.Second, "service reachable", func() (bool, string) {
				body, err := cs.CoreV1().Services(ns).ProxyGet("http", name, "http", "/v1/chat/completions", nil).DoRaw(ctx)
				return strings.Contains(string(body), "invalid_request_body"), fmt.Sprintf("%v %s", err, body)
			})
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			_ = cs.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{})
			_ = cs.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

func intOrPort(p int) intstr.IntOrString { return intstr.FromInt(p) }

// stackdDeployment runs `stackd <args>` from the sandbox's own image, labelled app=<name>.
func stackdDeployment(ns, name string, replicas int32, args []string, port int, readiness *corev1.Probe) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name: "stackd", Image: sb.Up.StackdImage, ImagePullPolicy: corev1.PullNever,
						Args: args, Ports: []corev1.ContainerPort{{ContainerPort: int32(port)}},
						ReadinessProbe: readiness,
					}},
				},
			},
		},
	}
}
