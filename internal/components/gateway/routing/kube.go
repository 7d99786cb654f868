package routing

import (
	"context"
	"fmt"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// HTTPRouteResource is the Gateway API route kind the data plane serves.
var HTTPRouteResource = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// Informers is a Table fed by informers on the Gateway's namespace: HTTPRoutes, InferencePools,
// Pods (pool endpoints), Services and EndpointSlices (Service backends, picker addresses).
// Every change rebuilds the snapshot, so routes apply without a restart.
//
// Only the Gateway's own namespace is watched, which keeps the data plane's RBAC to one Role.
// That covers routes and pools next to the Gateway (the modelharness layout); a backendRef to a
// Service in another namespace is reached through its cluster DNS name instead.
type Informers struct {
	Dynamic   dynamic.Interface
	Clientset kubernetes.Interface
	Gateway   types.NamespacedName
	// ClusterDomain completes cross-namespace Service names; "cluster.local" when empty.
	ClusterDomain string
	Log           *slog.Logger

	cur    atomic.Pointer[Snapshot]
	synced atomic.Bool
}

// Snapshot implements Table.
func (k *Informers) Snapshot() *Snapshot { return k.cur.Load() }

// Synced reports whether the first snapshot was built from synced caches.
func (k *Informers) Synced() bool { return k.synced.Load() }

// Run watches until ctx ends.
func (k *Informers) Run(ctx context.Context) error {
	log := k.Log
	if log == nil {
		log = slog.Default()
	}
	ns := k.Gateway.Namespace
	dyn := dynamicinformer.NewFilteredDynamicSharedInformerFactory(k.Dynamic, 0, ns, nil)
	routesInf := dyn.ForResource(HTTPRouteResource)
	poolsInf := dyn.ForResource(datastore.PoolResource(PoolGroup))
	kf := informers.NewSharedInformerFactoryWithOptions(k.Clientset, 0, informers.WithNamespace(ns),
		informers.WithTransform(stripManagedFields))
	podsInf := kf.Core().V1().Pods()
	svcInf := kf.Core().V1().Services()
	slicesInf := kf.Discovery().V1().EndpointSlices()

	changes := kube.NewChanges()
	handler := changes.Handler()
	for what, inf := range map[string]cache.SharedIndexInformer{
		"HTTPRoutes": routesInf.Informer(), "InferencePools": poolsInf.Informer(), "Pods": podsInf.Informer(),
		"Services": svcInf.Informer(), "EndpointSlices": slicesInf.Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching %s in %s: %w", what, ns, err)
		}
	}
	dyn.Start(ctx.Done())
	kf.Start(ctx.Done())
	defer dyn.Shutdown()
	defer kf.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), routesInf.Informer().HasSynced, poolsInf.Informer().HasSynced,
		podsInf.Informer().HasSynced, svcInf.Informer().HasSynced, slicesInf.Informer().HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("syncing the route caches of Gateway %s", k.Gateway)
	}
	listers := kubeListers{
		routes: routesInf.Lister(), pools: poolsInf.Lister(), pods: podsInf.Lister(),
		services: svcInf.Lister(), slices: slicesInf.Lister(),
	}
	lastProblems := ""
	for {
		in, problems := k.input(listers)
		snap := Build(in)
		k.cur.Store(snap)
		k.synced.Store(true)
		problems = append(problems, snap.Problems...)
		if msg := fmt.Sprint(problems); len(problems) > 0 && msg != lastProblems {
			log.Warn("route table problems", "gateway", k.Gateway.String(), "problems", problems)
			lastProblems = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes.C():
			// Let a burst of events (a Helm release creating several objects) settle first.
			time.Sleep(20 * time.Millisecond)
		}
	}
}

type kubeListers struct {
	routes, pools interface {
		List(labels.Selector) ([]runtime.Object, error)
	}
	pods interface {
		List(labels.Selector) ([]*corev1.Pod, error)
	}
	services interface {
		List(labels.Selector) ([]*corev1.Service, error)
	}
	slices interface {
		List(labels.Selector) ([]*discoveryv1.EndpointSlice, error)
	}
}

// input resolves the cluster's objects into a snapshot input. Objects that cannot be read are
// reported and skipped; the rest still route.
func (k *Informers) input(l kubeListers) (Input, []string) {
	in := Input{Gateway: k.Gateway, Pools: map[types.NamespacedName]Pool{}, Services: map[types.NamespacedName]Service{}}
	var problems []string
	routes, _ := l.routes.List(labels.Everything())
	for _, obj := range routes {
		var r gatewayv1.HTTPRoute
		u, ok := obj.(*unstructured.Unstructured)
		// A route being deleted (foreground deletion waits on the garbage collector) stops
		// routing at once, as the user asked.
		if !ok || u.GetDeletionTimestamp() != nil {
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			problems = append(problems, fmt.Sprintf("HTTPRoute %s/%s: %v", u.GetNamespace(), u.GetName(), err))
			continue
		}
		in.Routes = append(in.Routes, r)
	}
	services, _ := l.services.List(labels.Everything())
	slices, _ := l.slices.List(labels.Everything())
	for _, svc := range services {
		in.Services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = serviceEndpoints(svc, slices)
	}
	k.addRemoteServices(&in)
	pods, _ := l.pods.List(labels.Everything())
	pools, _ := l.pools.List(labels.Everything())
	for _, obj := range pools {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		p, err := poolFrom(u, pods, in.Services)
		if err != nil {
			problems = append(problems, err.Error())
		}
		in.Pools[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	return in, problems
}

// poolFrom resolves an InferencePool: its ready endpoints (the EPP's own discovery rules, so
// that a fail-open choice and the picker agree on what is ready) and its picker's address.
// A pool that cannot be read still appears, without endpoints or picker, so that requests
// routed to it get the model-unavailable answer rather than a missing-backend one.
func poolFrom(u *unstructured.Unstructured, pods []*corev1.Pod, services map[types.NamespacedName]Service) (Pool, error) {
	p := Pool{Namespace: u.GetNamespace(), Name: u.GetName(), FailureMode: FailClose}
	mode, _, _ := unstructured.NestedString(u.Object, "spec", "endpointPickerRef", "failureMode")
	if FailureMode(mode) == FailOpen {
		p.FailureMode = FailOpen
	}
	spec, err := datastore.PoolFromUnstructured(u)
	if err != nil {
		return p, err
	}
	for _, e := range datastore.EndpointsForPool(spec, pods) {
		p.Endpoints = append(p.Endpoints, e.Address)
	}
	kind, found, _ := unstructured.NestedString(u.Object, "spec", "endpointPickerRef", "kind")
	name, _, _ := unstructured.NestedString(u.Object, "spec", "endpointPickerRef", "name")
	port, _, _ := unstructured.NestedInt64(u.Object, "spec", "endpointPickerRef", "port", "number")
	if found && kind != "Service" || name == "" || port == 0 {
		return p, fmt.Errorf("InferencePool %s/%s: endpointPickerRef must name a Service and its port", p.Namespace, p.Name)
	}
	svc, ok := services[types.NamespacedName{Namespace: p.Namespace, Name: name}]
	if addrs := svc.Ports[int32(port)]; ok && len(addrs) > 0 {
		p.Picker = addrs[0]
	}
	return p, nil
}

// serviceEndpoints maps each Service port to where it is served. A ClusterIP Service is used
// through its virtual IP, which kube-proxy balances and which survives pod churn between
// snapshot updates; a headless one through its ready endpoints.
func serviceEndpoints(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) Service {
	out := Service{Namespace: svc.Namespace, Name: svc.Name, Ports: map[int32][]string{}}
	headless := svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		if !headless {
			out.Ports[sp.Port] = []string{net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(sp.Port)))}
			continue
		}
		addrs := []string{}
		for _, sl := range slices {
			if sl.Labels[discoveryv1.LabelServiceName] != svc.Name {
				continue
			}
			for _, port := range sl.Ports {
				if port.Port == nil || ptrString(port.Name) != sp.Name {
					continue
				}
				for _, ep := range sl.Endpoints {
					if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
						continue
					}
					for _, a := range ep.Addresses {
						addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(int(*port.Port))))
					}
				}
			}
		}
		out.Ports[sp.Port] = addrs
	}
	return out
}

// addRemoteServices makes Service backends in other namespaces reachable by DNS name, since
// the data plane does not watch those namespaces.
func (k *Informers) addRemoteServices(in *Input) {
	domain := k.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	for _, r := range in.Routes {
		for _, rule := range r.Spec.Rules {
			for _, ref := range rule.BackendRefs {
				if ref.Namespace == nil || string(*ref.Namespace) == k.Gateway.Namespace || ref.Port == nil ||
					(ref.Kind != nil && *ref.Kind != "Service") || (ref.Group != nil && *ref.Group != "") {
					continue
				}
				key := types.NamespacedName{Namespace: string(*ref.Namespace), Name: string(ref.Name)}
				svc, ok := in.Services[key]
				if !ok {
					svc = Service{Namespace: key.Namespace, Name: key.Name, Ports: map[int32][]string{}}
				}
				host := fmt.Sprintf("%s.%s.svc.%s", key.Name, key.Namespace, domain)
				svc.Ports[*ref.Port] = []string{net.JoinHostPort(host, strconv.Itoa(int(*ref.Port)))}
				in.Services[key] = svc
			}
		}
	}
}

// stripManagedFields drops what the route table never reads and every pod carries in bulk.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
