package controller

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/addons"
	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/crds"
)

func TestControllerAgainstAPIServer(t *testing.T) {
	defs, err := crds.Definitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Every error the controllers log is kept: a pass that fails on an optimistic-concurrency
	// conflict shows up here (server-side apply must leave none).
	var logMu sync.Mutex
	var logged []string
	var stopping atomic.Bool // errors of passes cut short by the end of the test do not count
	log.SetLogger(funcr.New(func(prefix, args string) {
		if strings.Contains(args, `"error"`) && !stopping.Load() {
			logMu.Lock()
			logged = append(logged, prefix+" "+args)
			logMu.Unlock()
		}
	}, funcr.Options{}))
	t.Cleanup(func() {
		logMu.Lock()
		defer logMu.Unlock()
		for _, l := range logged {
			t.Errorf("controller logged an error: %s", l)
		}
	})
	cfg := apiservertest.Start(t, defs)

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := gatewayv1.Install(scheme); err != nil {
		t.Fatal(err)
	}
	// Install the offline manifest as `sandbox up` would, and run the controller with exactly the
	// RBAC it grants, by impersonating its service account.
	apiservertest.ApplyOffline(t, cfg, "gateway.yaml", addons.Values{SystemNamespace: "sandbox-system", StackdImage: "stackd:test"})
	asController := apiservertest.As(cfg, "system:serviceaccount:sandbox-system:gateway-controller")
	mgr, err := ctrl.NewManager(asController, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		// Controller names are unique per process; `go test -count 2` builds the same ones again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Image: "stackd:test", AuthzAddress: "authz:9001", BBRAddress: "bbr:9004", NodePortGateway: "models/models-gw"}
	if err := (&Reconciler{Client: mgr.GetClient(), Options: opts}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		stopping.Store(true)
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
	}

	for _, ns := range []string{"models", "team-b"} {
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(c.Create(ctx, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: "istio.io/gateway-controller"}}))
	newGateway := func(ns, name, class string) *gatewayv1.Gateway {
		gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: gatewayv1.GatewaySpec{
			GatewayClassName: gatewayv1.ObjectName(class),
			Listeners: []gatewayv1.Listener{
				{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
				{Name: "tls", Port: 443, Protocol: gatewayv1.TLSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{
					Mode: ptr.To(gatewayv1.TLSModePassthrough)}},
			},
		}}
		must(c.Create(ctx, gw))
		return gw
	}
	// Created first, so it is the oldest; the named Gateway still gets the node port.
	newGateway("team-b", "team-b-gw", ClassName)
	newGateway("models", "models-gw", ClassName)
	newGateway("models", "istio-gw", "istio")

	var gc gatewayv1.GatewayClass
	eventually("GatewayClass Accepted", func() bool {
		return c.Get(ctx, types.NamespacedName{Name: ClassName}, &gc) == nil &&
			meta.IsStatusConditionTrue(gc.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted))
	})

	dep := &appsv1.Deployment{}
	eventually("the data-plane Deployment", func() bool {
		return c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "models-gw-sandbox"}, dep) == nil
	})
	wantArgs := []string{"gateway", "--gateway=models/models-gw", "--port=8080", "--health-port=8081",
		"--authz-address=authz:9001", "--bbr-address=bbr:9004"}
	if ctr := dep.Spec.Template.Spec.Containers[0]; ctr.Image != "stackd:test" || !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("container = %s %v", ctr.Image, ctr.Args)
	}
	if dep.Spec.Template.Labels["gateway.networking.k8s.io/gateway-name"] != "models-gw" || len(dep.OwnerReferences) != 1 ||
		dep.OwnerReferences[0].Kind != "Gateway" {
		t.Errorf("labels %v, owners %v", dep.Spec.Template.Labels, dep.OwnerReferences)
	}
	svc := &corev1.Service{}
	eventually("the Service", func() bool {
		return c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "models-gw-sandbox"}, svc) == nil
	})
	if svc.Spec.Type != corev1.ServiceTypeNodePort || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 ||
		svc.Spec.Ports[0].NodePort != DefaultNodePort {
		t.Errorf("published Service = %s %+v, want NodePort 80→%d only (TLS is not served)", svc.Spec.Type, svc.Spec.Ports, DefaultNodePort)
	}
	other := &corev1.Service{}
	eventually("the other Gateway's Service", func() bool {
		return c.Get(ctx, types.NamespacedName{Namespace: "team-b", Name: "team-b-gw-sandbox"}, other) == nil
	})
	if other.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("unpublished Gateway's Service is %s", other.Spec.Type)
	}
	var rb rbacv1.RoleBinding
	must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "models-gw-sandbox"}, &rb))
	if rb.RoleRef.Name != DataPlaneClusterRole || rb.Subjects[0].Name != "models-gw-sandbox" {
		t.Errorf("RoleBinding = %+v", rb)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "istio-gw-sandbox"}, &appsv1.Deployment{}); err == nil {
		t.Error("a Gateway of another class got a data plane")
	}

	gw := &gatewayv1.Gateway{}
	getGW := func() bool {
		return c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "models-gw"}, gw) == nil
	}
	eventually("Accepted, not yet Programmed", func() bool {
		return getGW() && meta.IsStatusConditionTrue(gw.Status.Conditions, "Accepted") &&
			meta.IsStatusConditionFalse(gw.Status.Conditions, "Programmed")
	})
	if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != svc.Spec.ClusterIP {
		t.Errorf("addresses = %+v, want the Service's ClusterIP %s", gw.Status.Addresses, svc.Spec.ClusterIP)
	}
	if len(gw.Status.Listeners) != 2 || !meta.IsStatusConditionFalse(gw.Status.Listeners[1].Conditions, "Accepted") {
		t.Errorf("listeners = %+v, want the TLS listener not accepted", gw.Status.Listeners)
	}
	// No kubelet runs here: report the Deployment available as one would.
	dep.Status.Replicas, dep.Status.AvailableReplicas, dep.Status.ReadyReplicas = 1, 1, 1
	must(c.Status().Update(ctx, dep))
	eventually("Programmed", func() bool { return getGW() && meta.IsStatusConditionTrue(gw.Status.Conditions, "Programmed") })
	must(c.Get(ctx, types.NamespacedName{Namespace: "models", Name: "models-gw-sandbox"}, dep))
	for what, mf := range map[string][]metav1.ManagedFieldsEntry{"Deployment": dep.ManagedFields, "Gateway": gw.ManagedFields} {
		var applied, updated []string
		for _, e := range mf {
			if e.Manager != FieldManager {
				continue
			}
			if e.Operation == metav1.ManagedFieldsOperationApply {
				applied = append(applied, e.Subresource)
			} else {
				updated = append(updated, e.Subresource)
			}
		}
		if len(applied) == 0 || len(updated) > 0 {
			t.Errorf("%s: the controller's writes: applied %q, updated %q; want server-side apply only", what, applied, updated)
		}
	}

	// Routes: one to an existing InferencePool, one to a missing Service.
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
		"metadata": map[string]any{"name": "phi-4-mini-inferencepool", "namespace": "models"},
		"spec": map[string]any{
			"selector":          map[string]any{"matchLabels": map[string]any{"app": "phi"}},
			"targetPorts":       []any{map[string]any{"number": int64(5000)}},
			"endpointPickerRef": map[string]any{"name": "phi-4-mini-inferencepool-epp", "port": map[string]any{"number": int64(9002)}},
		},
	}}
	must(c.Create(ctx, pool))
	if got, _, _ := unstructured.NestedString(pool.Object, "spec", "endpointPickerRef", "failureMode"); got != "FailClose" {
		t.Errorf("InferencePool CRD default failureMode = %q, want FailClose", got)
	}
	route := func(name string, ref gatewayv1.BackendObjectReference) *gatewayv1.HTTPRoute {
		r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "models", Name: name}}
		r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: "models-gw"}}
		r.Spec.Rules = []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: ref}}}}}
		must(c.Create(ctx, r))
		return r
	}
	route("phi-4-mini-route", gatewayv1.BackendObjectReference{Group: ptr.To(gatewayv1.Group("inference.networking.k8s.io")),
		Kind: ptr.To(gatewayv1.Kind("InferencePool")), Name: "phi-4-mini-inferencepool"})
	route("dangling", gatewayv1.BackendObjectReference{Name: "no-such-service", Port: ptr.To[gatewayv1.PortNumber](80)})
	routeStatus := func(name string) (accepted, resolved *metav1.Condition) {
		var r gatewayv1.HTTPRoute
		if c.Get(ctx, types.NamespacedName{Namespace: "models", Name: name}, &r) != nil || len(r.Status.Parents) != 1 {
			return nil, nil
		}
		ps := r.Status.Parents[0]
		if ps.ControllerName != ControllerName {
			return nil, nil
		}
		return meta.FindStatusCondition(ps.Conditions, "Accepted"), meta.FindStatusCondition(ps.Conditions, "ResolvedRefs")
	}
	eventually("route statuses", func() bool {
		a1, r1 := routeStatus("phi-4-mini-route")
		a2, r2 := routeStatus("dangling")
		return a1 != nil && a1.Status == "True" && r1 != nil && r1.Status == "True" &&
			a2 != nil && a2.Status == "True" && r2 != nil && r2.Status == "False" && r2.Reason == "BackendNotFound"
	})
	eventually("two attached routes", func() bool { return getGW() && gw.Status.Listeners[0].AttachedRoutes == 2 })

	// The data plane can read what its informers watch in its namespace, and nothing elsewhere.
	asDataPlane := apiservertest.As(cfg, "system:serviceaccount:models:models-gw-sandbox")
	dp, err := dynamic.NewForConfig(asDataPlane)
	must(err)
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
		{Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"},
		{Version: "v1", Resource: "pods"}, {Version: "v1", Resource: "services"},
		{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	} {
		if _, err := dp.Resource(gvr).Namespace("models").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("data plane cannot list %s: %v", gvr.Resource, err)
		}
		if _, err := dp.Resource(gvr).Namespace("team-b").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("data plane listing %s in another namespace: %v, want forbidden", gvr.Resource, err)
		}
	}
}
