package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/controller"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
	"github.com/inference-sandbox/sandbox/internal/kube"
)

// TestDataPlaneAgainstAPIServer runs the data plane as in a cluster: its route table comes from
// informers on a real kube-apiserver, read with exactly the RBAC the controller grants it, and
// requests go through BBR and the picker to a simulator. The model pod and the picker are
// loopback processes described by Pod, Service and EndpointSlice objects.
func TestDataPlaneAgainstAPIServer(t *testing.T) {
	defs, err := crds.Definitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := apiservertest.Start(t, defs)
	ctx := context.Background()
	kc, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	apply := func(doc string) {
		t.Helper()
		objs, err := kube.Decode([]byte(doc))
		must(err)
		must(kc.Apply(ctx, objs))
	}
	// The ClusterRole from the offline manifest, bound as the controller binds it.
	apiservertest.ApplyOffline(t, cfg, "gateway.yaml", addons.Values{SystemNamespace: "sandbox-system", StackdImage: "stackd:test"})
	cs := kc.Clientset
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}, metav1.CreateOptions{})
	must(err)
	_, err = cs.RbacV1().RoleBindings(testNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "models-gw-sandbox"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controller.DataPlaneClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "models-gw-sandbox", Namespace: testNamespace}},
	}, metav1.CreateOptions{})
	must(err)

	// Loopback processes: authz, BBR, one simulator, one scripted picker.
	s := newStack(t, stackOptions{simsPerModel: 1}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	_, simPort, _ := net.SplitHostPort(m.addrs[0])
	// EndpointSlices refuse loopback addresses, so the picker also listens on an address of a
	// local interface (delivered locally; nothing leaves the machine).
	hostIP := localAddress(t)
	pln, err := net.Listen("tcp", net.JoinHostPort(hostIP, "0"))
	must(err)
	psrv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(psrv, m.picker)
	extproctest.Run(t, func(ctx context.Context) error { return extproc.ServeGRPC(ctx, psrv, pln) })
	pp := pln.Addr().(*net.TCPAddr).Port

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "phi-4-mini-0", Namespace: testNamespace, Labels: map[string]string{"inferenceset.kaito.sh/created-by": "phi-4-mini"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sim", Image: "stackd:test"}}},
	}
	pod, err = cs.CoreV1().Pods(testNamespace).Create(ctx, pod, metav1.CreateOptions{})
	must(err)
	pod.Status = corev1.PodStatus{PodIP: "127.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	_, err = cs.CoreV1().Pods(testNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	must(err)
	// A headless picker Service, so that its EndpointSlice (loopback) is what the gateway dials.
	_, err = cs.CoreV1().Services(testNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "phi-4-mini-inferencepool-epp"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "grpc", Port: 9002}}},
	}, metav1.CreateOptions{})
	must(err)
	_, err = cs.DiscoveryV1().EndpointSlices(testNamespace).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "phi-4-mini-inferencepool-epp-1", Labels: map[string]string{discoveryv1.LabelServiceName: "phi-4-mini-inferencepool-epp"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{hostIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(pp))}},
	}, metav1.CreateOptions{})
	must(err)
	apply(`
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: phi-4-mini-inferencepool, namespace: models}
spec:
  selector: {matchLabels: {inferenceset.kaito.sh/created-by: phi-4-mini}}
  targetPorts: [{number: ` + simPort + `}]
  endpointPickerRef: {name: phi-4-mini-inferencepool-epp, port: {number: 9002}}
`)
	routeYAML, err := yaml.Marshal(s.in.Routes[0])
	must(err)
	route := &unstructured.Unstructured{}
	must(yaml.Unmarshal(routeYAML, &route.Object))
	delete(route.Object, "status")
	unstructured.RemoveNestedField(route.Object, "metadata", "creationTimestamp")
	route.SetAPIVersion("gateway.networking.k8s.io/v1")
	route.SetKind("HTTPRoute")
	must(kc.ApplyObject(ctx, route))

	// The data plane, as the Gateway's service account.
	asDataPlane := apiservertest.As(cfg, "system:serviceaccount:models:models-gw-sandbox")
	dpDyn, err := dynamic.NewForConfig(asDataPlane)
	must(err)
	dpCS, err := kubernetes.NewForConfig(asDataPlane)
	must(err)
	table := &routing.Informers{Dynamic: dpDyn, Clientset: dpCS, Gateway: testGateway, Log: slog.New(slog.DiscardHandler)}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- table.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("informers: %v", err)
		}
	})
	gs, err := New(Config{Gateway: testGateway, AuthzAddress: s.authzAddr, BBRAddress: s.bbrAddr, Logger: slog.New(slog.DiscardHandler)}, table)
	must(err)
	t.Cleanup(gs.Close)
	s.server = gs
	s.gw = httptest.NewServer(gs) // requests from here on go to the cluster-fed data plane
	t.Cleanup(s.gw.Close)

	status := func() int {
		resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
		resp.Body.Close()
		return resp.StatusCode
	}
	if !waitFor(10*time.Second, func() bool { return table.Synced() && status() == 200 }) {
		t.Fatalf("the model never became routable: last status %d", status())
	}
	if m.picker.picked.Load() == 0 {
		t.Error("the picker was not asked")
	}
	// Deleting the route takes effect without a restart.
	must(kc.Delete(ctx, []*unstructured.Unstructured{route}))
	if !waitFor(10*time.Second, func() bool { return status() == 404 }) {
		t.Errorf("after deleting the HTTPRoute: %d, want 404 model_not_found", status())
	}
}

// localAddress returns an IPv4 address of an up, non-loopback local interface.
func localAddress(t *testing.T) string {
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Skip("no non-loopback IPv4 interface for the picker's EndpointSlice")
	return ""
}
