package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
)

// poolGVK is InferencePool v1, read as unstructured so that the controller does not take the
// Inference Extension module (and its dependency tree) for one type it only looks up.
var poolGVK = schema.GroupVersionKind{Group: routing.PoolGroup, Version: "v1", Kind: routing.PoolKind}

// reconcileRoute writes this controller's entries of an HTTPRoute's status.parents: Accepted
// when the parent is a sandbox Gateway in the route's namespace, ResolvedRefs when every
// backendRef names an existing Service or InferencePool. Entries of other controllers stay.
// Upstream's e2e suite checks Accepted=True on each model route (upstream-production-stack §5.4).
func (r *Reconciler) reconcileRoute(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var route gatewayv1.HTTPRoute
	if err := r.Client.Get(ctx, req.NamespacedName, &route); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var parents []gatewayv1.RouteParentStatus
	old := map[string]gatewayv1.RouteParentStatus{}
	for _, ps := range route.Status.Parents {
		if ps.ControllerName != ControllerName {
			parents = append(parents, ps)
			continue
		}
		old[parentKey(ps.ParentRef, route.Namespace)] = ps
	}
	resolved, reason, msg, err := r.resolveRefs(ctx, &route)
	if err != nil {
		return reconcile.Result{}, err
	}
	for _, p := range route.Spec.ParentRefs {
		if p.Group != nil && *p.Group != gatewayv1.GroupName || p.Kind != nil && *p.Kind != "Gateway" {
			continue
		}
		ns := route.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		var gw gatewayv1.Gateway
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: string(p.Name)}, &gw); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return reconcile.Result{}, fmt.Errorf("reading Gateway %s/%s: %w", ns, p.Name, err)
		}
		if ok, err := r.ours(ctx, gw.Spec.GatewayClassName); err != nil || !ok {
			if err != nil {
				return reconcile.Result{}, err
			}
			continue
		}
		ps := old[parentKey(p, route.Namespace)]
		ps.ParentRef, ps.ControllerName = p, ControllerName
		accepted := metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionTrue,
			Reason: string(gatewayv1.RouteReasonAccepted), ObservedGeneration: route.Generation}
		if ns != route.Namespace {
			accepted.Status, accepted.Reason = metav1.ConditionFalse, string(gatewayv1.RouteReasonNotAllowedByListeners)
			accepted.Message = "the sandbox gateway accepts routes from its own namespace only"
		}
		meta.SetStatusCondition(&ps.Conditions, accepted)
		rc := metav1.Condition{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue,
			Reason: string(gatewayv1.RouteReasonResolvedRefs), ObservedGeneration: route.Generation}
		if !resolved {
			rc.Status, rc.Reason, rc.Message = metav1.ConditionFalse, reason, msg
		}
		meta.SetStatusCondition(&ps.Conditions, rc)
		parents = append(parents, ps)
	}
	var result reconcile.Result
	if !resolved {
		// InferencePools are not watched here; look again for one created later.
		result.RequeueAfter = 30 * time.Second
	}
	if equality.Semantic.DeepEqual(parents, route.Status.Parents) || len(parents) == 0 && len(route.Status.Parents) == 0 {
		return result, nil
	}
	// status.parents is an atomic list shared with other controllers, so applying it replaces
	// their entries with the ones read above. When there are any, the apply carries the
	// resourceVersion they were read at, so that an entry written meanwhile is not lost: the
	// conflict then requeues this pass quietly. Otherwise no lock is needed, and none is taken.
	var lockAt string
	if foreign(parents) {
		lockAt = route.ResourceVersion
	}
	if err := r.applyStatus(ctx, &route, &gatewayv1.HTTPRouteStatus{RouteStatus: gatewayv1.RouteStatus{Parents: parents}}, lockAt); err != nil {
		if apierrors.IsConflict(err) {
			return reconcile.Result{RequeueAfter: 200 * time.Millisecond}, nil
		}
		return reconcile.Result{}, fmt.Errorf("applying HTTPRoute %s status: %w", req.NamespacedName, err)
	}
	return result, nil
}

// foreign reports whether some entry belongs to another controller.
func foreign(parents []gatewayv1.RouteParentStatus) bool {
	for _, p := range parents {
		if p.ControllerName != ControllerName {
			return true
		}
	}
	return false
}

// resolveRefs checks every backendRef of the route.
func (r *Reconciler) resolveRefs(ctx context.Context, route *gatewayv1.HTTPRoute) (ok bool, reason, msg string, err error) {
	for _, rule := range route.Spec.Rules {
		for _, ref := range rule.BackendRefs {
			ns := route.Namespace
			if ref.Namespace != nil {
				ns = string(*ref.Namespace)
			}
			key := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
			group, kind := "", "Service"
			if ref.Group != nil {
				group = string(*ref.Group)
			}
			if ref.Kind != nil {
				kind = string(*ref.Kind)
			}
			var obj client.Object
			switch {
			case group == "" && kind == "Service":
				obj = &corev1.Service{}
			case group == routing.PoolGroup && kind == routing.PoolKind:
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(poolGVK)
				obj = u
			default:
				return false, string(gatewayv1.RouteReasonInvalidKind), fmt.Sprintf("backend kind %s/%s is not supported", group, kind), nil
			}
			if err := r.Client.Get(ctx, key, obj); err != nil {
				if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
					return false, string(gatewayv1.RouteReasonBackendNotFound), fmt.Sprintf("%s %s not found", kind, key), nil
				}
				return false, "", "", fmt.Errorf("reading %s %s: %w", kind, key, err)
			}
		}
	}
	return true, "", "", nil
}

func parentKey(p gatewayv1.ParentReference, routeNS string) string {
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	section := ""
	if p.SectionName != nil {
		section = string(*p.SectionName)
	}
	return ns + "/" + string(p.Name) + "/" + section
}
