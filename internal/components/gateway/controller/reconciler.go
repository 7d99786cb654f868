package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Reconciler gives each Gateway of the sandbox class its data plane and status. Level-triggered:
// every pass reads the Gateway, its class and its objects and repairs the difference; owner
// references let the garbage collector remove the objects with the Gateway.
type Reconciler struct {
	Client  client.Client
	Options Options
}

// SetupWithManager registers the GatewayClass, Gateway and HTTPRoute-status controllers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := ctrl.NewControllerManagedBy(mgr).Named("gatewayclass").
		For(&gatewayv1.GatewayClass{}).
		Complete(reconcile.Func(r.reconcileClass)); err != nil {
		return fmt.Errorf("setting up the GatewayClass controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("gateway").
		For(&gatewayv1.Gateway{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Watches(&gatewayv1.GatewayClass{}, handler.EnqueueRequestsFromMapFunc(r.allGateways)).
		// Attached routes are counted in listener status; and which Gateway holds the node port
		// depends on the others, so any Gateway change revisits all.
		Watches(&gatewayv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(r.routeParents)).
		Complete(r); err != nil {
		return fmt.Errorf("setting up the Gateway controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("httproute").
		For(&gatewayv1.HTTPRoute{}).
		Watches(&gatewayv1.Gateway{}, handler.EnqueueRequestsFromMapFunc(r.routesInNamespace)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.routesInNamespace)).
		Complete(reconcile.Func(r.reconcileRoute)); err != nil {
		return fmt.Errorf("setting up the HTTPRoute status controller: %w", err)
	}
	return nil
}

func (r *Reconciler) reconcileClass(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var gc gatewayv1.GatewayClass
	if err := r.Client.Get(ctx, req.NamespacedName, &gc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if string(gc.Spec.ControllerName) != ControllerName {
		return reconcile.Result{}, nil
	}
	conds := slices.Clone(gc.Status.Conditions)
	meta.SetStatusCondition(&conds, metav1.Condition{
		Type: string(gatewayv1.GatewayClassConditionStatusAccepted), Status: metav1.ConditionTrue,
		Reason: string(gatewayv1.GatewayClassReasonAccepted), ObservedGeneration: gc.Generation,
		Message: "Handled by the sandbox gateway controller",
	})
	if equality.Semantic.DeepEqual(conds, gc.Status.Conditions) {
		return reconcile.Result{}, nil
	}
	if err := r.applyStatus(ctx, &gc, &gatewayv1.GatewayClassStatus{Conditions: conds}, ""); err != nil {
		return reconcile.Result{}, fmt.Errorf("applying GatewayClass %s status: %w", gc.Name, err)
	}
	return reconcile.Result{}, nil
}

// ours reports whether a GatewayClass of that name is served by this controller.
func (r *Reconciler) ours(ctx context.Context, class gatewayv1.ObjectName) (bool, error) {
	var gc gatewayv1.GatewayClass
	if err := r.Client.Get(ctx, types.NamespacedName{Name: string(class)}, &gc); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading GatewayClass %s: %w", class, err)
	}
	return string(gc.Spec.ControllerName) == ControllerName, nil
}

// Reconcile implements reconcile.Reconciler for Gateways.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var gw gatewayv1.Gateway
	if err := r.Client.Get(ctx, req.NamespacedName, &gw); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !gw.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if ok, err := r.ours(ctx, gw.Spec.GatewayClassName); err != nil || !ok {
		return ctrl.Result{}, err
	}
	nodePort, err := r.nodePortFor(ctx, &gw)
	if err != nil {
		return ctrl.Result{}, err
	}
	name := types.NamespacedName{Namespace: gw.Namespace, Name: objectName(&gw)}
	om := func() metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name} }
	sa := &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: om()}
	sa.Labels = labels(&gw)
	rb := &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"}, ObjectMeta: om()}
	setRoleBinding(rb, &gw)
	dep := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "Deployment"}, ObjectMeta: om()}
	setDeployment(dep, &gw, r.Options)
	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: om()}
	setService(svc, &gw, nodePort)
	for _, obj := range []client.Object{sa, rb, dep, svc} {
		err := r.apply(ctx, &gw, obj)
		if obj == svc && nodePort > 0 && apierrors.IsInvalid(err) && strings.Contains(err.Error(), "already allocated") {
			// The node port moves to this Gateway from another that has not released it yet
			// (the preferred Gateway was created after the oldest one took the port); its pass
			// frees it shortly. Not an error worth logging.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("applying %T %s for Gateway %s: %w", obj, name, req.NamespacedName, err)
		}
	}
	return ctrl.Result{}, r.updateGatewayStatus(ctx, &gw, dep, svc)
}

// FieldManager names this controller in the managed fields of everything it writes.
const FieldManager = "sandbox-gateway-controller"

// apply server-side-applies the fields of obj this controller owns, with gw as the controlling
// owner, and reads the result back into obj. Server-side apply needs no resourceVersion, so a
// pass working from a cache that lags behind its own last write (or behind the Deployment
// controller's status updates) no longer fails with an optimistic-concurrency conflict, and
// fields that other managers set (a Service's allocated node ports, defaults) are left to them.
func (r *Reconciler) apply(ctx context.Context, gw *gatewayv1.Gateway, obj client.Object) error {
	if err := controllerutil.SetControllerReference(gw, obj, r.Client.Scheme()); err != nil {
		return err
	}
	u, err := toApply(obj)
	if err != nil {
		return err
	}
	unstructured.RemoveNestedField(u.Object, "status")
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj)
}

// applyStatus server-side-applies status as the whole status of obj (a Gateway API object of
// this controller); obj supplies the kind, name and namespace. A non-empty lockAt is the
// resourceVersion the object must still have, for the rare write that needs a lock.
func (r *Reconciler) applyStatus(ctx context.Context, obj client.Object, status any, lockAt string) error {
	gvk, err := apiutil.GVKForObject(obj, r.Client.Scheme())
	if err != nil {
		return err
	}
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return fmt.Errorf("encoding the status: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(obj.GetName())
	u.SetResourceVersion(lockAt)
	return r.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
}

// toApply turns a typed object built from scratch into an apply configuration: only what was
// set, without the creation timestamps that encoding a typed object adds as null.
func toApply(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	return u, nil
}

// nodePortFor returns the node port gw is published on, or 0. The Gateway named in the options
// gets it; without that Gateway, the oldest Gateway of the class (name breaks ties), so that
// exactly one Gateway holds the port at any time.
func (r *Reconciler) nodePortFor(ctx context.Context, gw *gatewayv1.Gateway) (int32, error) {
	port := r.Options.NodePort
	if port == 0 {
		port = DefaultNodePort
	}
	if port < 0 {
		return 0, nil
	}
	if r.Options.NodePortGateway == gw.Namespace+"/"+gw.Name {
		return port, nil
	}
	var list gatewayv1.GatewayList
	if err := r.Client.List(ctx, &list); err != nil {
		return 0, fmt.Errorf("listing Gateways: %w", err)
	}
	var candidates []*gatewayv1.Gateway
	for i := range list.Items {
		g := &list.Items[i]
		ok, err := r.ours(ctx, g.Spec.GatewayClassName)
		if err != nil {
			return 0, err
		}
		if !ok || !g.DeletionTimestamp.IsZero() {
			continue
		}
		if r.Options.NodePortGateway == g.Namespace+"/"+g.Name {
			return 0, nil // the preferred Gateway exists and is not gw
		}
		candidates = append(candidates, g)
	}
	slices.SortFunc(candidates, func(a, b *gatewayv1.Gateway) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	if len(candidates) > 0 && candidates[0].UID == gw.UID {
		return port, nil
	}
	return 0, nil
}

func (r *Reconciler) updateGatewayStatus(ctx context.Context, gw *gatewayv1.Gateway, dep *appsv1.Deployment, svc *corev1.Service) error {
	var routes gatewayv1.HTTPRouteList
	if err := r.Client.List(ctx, &routes, client.InNamespace(gw.Namespace)); err != nil {
		return fmt.Errorf("listing HTTPRoutes in %s: %w", gw.Namespace, err)
	}
	st := gw.Status.DeepCopy()
	gen := gw.Generation
	programmed := dep.Status.AvailableReplicas > 0
	cond := func(conds *[]metav1.Condition, typ string, ok bool, reason, notReason, msg string) {
		c := metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, ObservedGeneration: gen, Message: msg}
		if !ok {
			c.Status, c.Reason = metav1.ConditionFalse, notReason
		}
		meta.SetStatusCondition(conds, c)
	}
	cond(&st.Conditions, string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "", "")
	progMsg := fmt.Sprintf("Deployment %s is available", dep.Name)
	if !programmed {
		progMsg = fmt.Sprintf("waiting for Deployment %s to become available", dep.Name)
	}
	cond(&st.Conditions, string(gatewayv1.GatewayConditionProgrammed), programmed,
		string(gatewayv1.GatewayReasonProgrammed), string(gatewayv1.GatewayReasonPending), progMsg)
	st.Addresses = nil
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		st.Addresses = append(st.Addresses, gatewayv1.GatewayStatusAddress{Type: ptr.To(gatewayv1.IPAddressType), Value: ip})
	}
	var listeners []gatewayv1.ListenerStatus
	for _, l := range gw.Spec.Listeners {
		ls := gatewayv1.ListenerStatus{Name: l.Name, SupportedKinds: []gatewayv1.RouteGroupKind{}}
		for _, old := range gw.Status.Listeners {
			if old.Name == l.Name {
				ls.Conditions = old.Conditions
			}
		}
		if supported(l) {
			ls.SupportedKinds = []gatewayv1.RouteGroupKind{{Group: ptr.To(gatewayv1.Group(gatewayv1.GroupName)), Kind: "HTTPRoute"}}
			ls.AttachedRoutes = attachedRoutes(gw, l, routes.Items)
			cond(&ls.Conditions, string(gatewayv1.ListenerConditionAccepted), true, string(gatewayv1.ListenerReasonAccepted), "", "")
			cond(&ls.Conditions, string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "", "")
			cond(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), programmed,
				string(gatewayv1.ListenerReasonProgrammed), string(gatewayv1.ListenerReasonPending), "")
		} else {
			msg := fmt.Sprintf("protocol %s is not supported; the sandbox gateway serves HTTP", l.Protocol)
			cond(&ls.Conditions, string(gatewayv1.ListenerConditionAccepted), false, "", string(gatewayv1.ListenerReasonUnsupportedProtocol), msg)
			cond(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), false, "", string(gatewayv1.ListenerReasonInvalid), msg)
		}
		listeners = append(listeners, ls)
	}
	st.Listeners = listeners
	if equality.Semantic.DeepEqual(st, &gw.Status) {
		return nil
	}
	if err := r.applyStatus(ctx, gw, st, ""); err != nil {
		return fmt.Errorf("applying Gateway %s/%s status: %w", gw.Namespace, gw.Name, err)
	}
	return nil
}

// attachedRoutes counts the routes in the Gateway's namespace that name it (and, with a
// sectionName, this listener). Only same-namespace routes are attached: the data plane watches
// its own namespace, which is also the Gateway API's default allowedRoutes.
func attachedRoutes(gw *gatewayv1.Gateway, l gatewayv1.Listener, routes []gatewayv1.HTTPRoute) int32 {
	var n int32
	for i := range routes {
		for _, p := range routes[i].Spec.ParentRefs {
			if refersTo(p, routes[i].Namespace, gw) && (p.SectionName == nil || *p.SectionName == l.Name) {
				n++
				break
			}
		}
	}
	return n
}

func refersTo(p gatewayv1.ParentReference, routeNS string, gw *gatewayv1.Gateway) bool {
	if p.Group != nil && *p.Group != gatewayv1.GroupName || p.Kind != nil && *p.Kind != "Gateway" {
		return false
	}
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	return ns == gw.Namespace && string(p.Name) == gw.Name
}

func (r *Reconciler) allGateways(ctx context.Context, _ client.Object) []reconcile.Request {
	var list gatewayv1.GatewayList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, g := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: g.Namespace, Name: g.Name}})
	}
	return out
}

func (r *Reconciler) routeParents(_ context.Context, obj client.Object) []reconcile.Request {
	route, ok := obj.(*gatewayv1.HTTPRoute)
	if !ok {
		return nil
	}
	var out []reconcile.Request
	for _, p := range route.Spec.ParentRefs {
		ns := route.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: string(p.Name)}})
	}
	return out
}

func (r *Reconciler) routesInNamespace(ctx context.Context, obj client.Object) []reconcile.Request {
	var list gatewayv1.HTTPRouteList
	if err := r.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, rt := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rt.Namespace, Name: rt.Name}})
	}
	return out
}
