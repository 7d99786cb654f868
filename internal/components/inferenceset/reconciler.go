// Package inferenceset is the offline profile's InferenceSet controller (`stackd inferenceset`):
// it realises each kaito.sh InferenceSet as KAITO does, one single-pod StatefulSet and one
// Service per replica, with pods that run the vLLM simulator on port 5000 and request one
// fake GPU, and reports ready replicas through the status the HPA and the scaler read
// (shared/facts/kaito-keda-auth-facts.md §1).
package inferenceset

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// FieldOwner names this controller in managed fields.
const FieldOwner = "inferenceset-controller"

// Reconciler realises InferenceSets. Level-triggered: each pass lists the replicas that exist,
// plans the difference to spec.replicas and the current template, applies it and writes status.
type Reconciler struct {
	Client  client.Client
	Options Options
	// Recorder receives events for `kubectl describe`; optional.
	Recorder events.EventRecorder
}

func (r *Reconciler) event(is *InferenceSet, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(is, nil, typ, reason, action, note, args...)
	}
}

// SetupWithManager registers the controller: InferenceSets, the StatefulSets and Services they
// own, and their pods (for readiness and Pending reasons in status).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).Named("inferenceset").
		For(&InferenceSet{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podOwner)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the InferenceSet controller: %w", err)
	}
	return nil
}

func podOwner(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[LabelCreatedBy]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var is InferenceSet
	if err := r.Client.Get(ctx, req.NamespacedName, &is); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !is.DeletionTimestamp.IsZero() {
		// Owner references hand the replicas to the garbage collector; their pods still get
		// their grace period.
		return ctrl.Result{}, nil
	}
	if err := Validate(&is); err != nil {
		// Once per distinct problem, not on every pass.
		if c := meta.FindStatusCondition(is.Status.Conditions, ConditionReady); c == nil || c.Message != err.Error() {
			r.event(&is, corev1.EventTypeWarning, "InvalidSpec", "Validate", "%v", err)
		}
		return ctrl.Result{}, r.writeStatus(ctx, &is, 0, metav1.Condition{
			Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonFailed, Message: err.Error(),
		})
	}

	var sets appsv1.StatefulSetList
	if err := r.Client.List(ctx, &sets, client.InNamespace(is.Namespace), client.MatchingLabels{LabelCreatedBy: is.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing replicas of InferenceSet %s: %w", req.NamespacedName, err)
	}
	owned := map[int]*appsv1.StatefulSet{}
	var have []replica
	for i := range sets.Items {
		sts := &sets.Items[i]
		idx, ok := replicaIndex(is.Name, sts.Name)
		if !ok || !metav1.IsControlledBy(sts, &is) {
			continue
		}
		owned[idx] = sts
		age := time.Since(sts.CreationTimestamp.Time)
		have = append(have, replica{
			index:    idx,
			ready:    replicaReady(sts),
			current:  sts.Annotations[annotationTemplateHash] == r.hashFor(&is, sts.Name),
			deleting: !sts.DeletionTimestamp.IsZero(),
			stale:    !replicaReady(sts) && age > r.Options.SurgeTimeout,
			young:    age < r.Options.SurgeTimeout,
		})
	}
	desired := int(is.DesiredReplicas())
	p := planReplicas(desired, have)

	for _, i := range p.remove {
		// Background propagation: the StatefulSet goes at once, its pod terminates gracefully
		// (pre-stop sleep, then the simulator drains in-flight requests).
		if err := r.Client.Delete(ctx, owned[i], client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("removing replica %s/%s: %w", is.Namespace, owned[i].Name, err)
		}
		r.event(&is, corev1.EventTypeNormal, "ReplicaRemoved", "ScaleDown", "Removed replica %s (%d desired); its pod finishes in-flight requests", owned[i].Name, desired)
		// Its Services go with it; the pod keeps serving through the picker until it terminates.
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: is.Namespace, Name: owned[i].Name}}
		if err := r.Client.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("removing Service %s/%s: %w", is.Namespace, svc.Name, err)
		}
		headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: is.Namespace, Name: owned[i].Name + "-headless"}}
		if err := r.Client.Delete(ctx, headless); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("removing Service %s/%s: %w", is.Namespace, headless.Name, err)
		}
	}
	for _, i := range slices.Concat(p.create, p.update) {
		if err := r.applyReplica(ctx, &is, ReplicaName(is.Name, i)); err != nil {
			return ctrl.Result{}, err
		}
		switch {
		case slices.Contains(p.create, i) && i >= desired:
			r.event(&is, corev1.EventTypeNormal, "ReplicaCreated", "Surge", "Created surge replica %s so the roll-out keeps %d ready", ReplicaName(is.Name, i), desired)
		case slices.Contains(p.create, i):
			r.event(&is, corev1.EventTypeNormal, "ReplicaCreated", "ScaleUp", "Created replica %s (%d desired)", ReplicaName(is.Name, i), desired)
		default:
			r.event(&is, corev1.EventTypeNormal, "ReplicaUpdated", "Update", "Rolling replica %s to the new template", ReplicaName(is.Name, i))
		}
	}
	// Replicas that exist and are kept get their Services repaired on every pass.
	for i := 0; i < desired; i++ {
		if sts, ok := owned[i]; ok && sts.DeletionTimestamp.IsZero() && !slices.Contains(p.update, i) {
			if err := r.applyServices(ctx, &is, sts.Name); err != nil {
				return ctrl.Result{}, err
			}
		}
	}

	ready := 0
	for _, rep := range have {
		if rep.index < desired && rep.ready && !rep.deleting {
			ready++
		}
	}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonReady,
		Message: fmt.Sprintf("inferenceset is ready, %d/%d replicas are ready", ready, desired)}
	if ready < desired {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNotReady
		cond.Message = fmt.Sprintf("inferenceset is not ready, %d/%d replicas are ready", ready, desired)
		if why, err := r.pendingReasons(ctx, &is); err != nil {
			return ctrl.Result{}, err
		} else if why != "" {
			cond.Message += "; " + why
		}
	}
	if err := r.writeStatus(ctx, &is, int32(ready), cond); err != nil {
		return ctrl.Result{}, err
	}
	if p.wait {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	return ctrl.Result{}, nil
}

// replicaReady reports whether the replica's pod serves the StatefulSet's current template. A
// status that has not caught up with the last template change does not count: right after an
// update it still reports the old pod as ready, and trusting it would roll the next replica
// while this one restarts.
func replicaReady(sts *appsv1.StatefulSet) bool {
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation && st.ReadyReplicas >= 1 && st.CurrentRevision == st.UpdateRevision
}

// hashFor is the template hash replica name should carry.
func (r *Reconciler) hashFor(is *InferenceSet, name string) string {
	return templateHash(podTemplate(is, name, r.Options))
}

func (r *Reconciler) applyReplica(ctx context.Context, is *InferenceSet, name string) error {
	if err := r.applyServices(ctx, is, name); err != nil {
		return err
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: is.Namespace, Name: name}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, sts, func() error {
		setStatefulSet(sts, is, name, r.Options)
		return controllerutil.SetControllerReference(is, sts, r.Client.Scheme())
	})
	if apierrors.IsAlreadyExists(err) {
		return nil // a deleted replica of the same index is still terminating; the next pass creates it
	}
	if err != nil {
		return fmt.Errorf("applying replica %s/%s: %w", is.Namespace, name, err)
	}
	return nil
}

func (r *Reconciler) applyServices(ctx context.Context, is *InferenceSet, name string) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: is.Namespace, Name: name}}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: is.Namespace, Name: name + "-headless"}}
	for _, o := range []struct {
		svc    *corev1.Service
		mutate func()
	}{
		{svc, func() { setService(svc, is, name) }},
		{headless, func() {
			headless.Labels = objectLabels(is, name)
			headless.Spec.ClusterIP = corev1.ClusterIPNone
			headless.Spec.Selector = map[string]string{LabelWorkspace: name}
			headless.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: ServingPort, Protocol: corev1.ProtocolTCP}}
			headless.Spec.PublishNotReadyAddresses = true
		}},
	} {
		if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, o.svc, func() error {
			if !o.svc.DeletionTimestamp.IsZero() {
				return nil
			}
			o.mutate()
			return controllerutil.SetControllerReference(is, o.svc, r.Client.Scheme())
		}); err != nil {
			return fmt.Errorf("applying Service %s/%s: %w", is.Namespace, o.svc.Name, err)
		}
	}
	return nil
}

// pendingReasons summarises why replicas' pods are not running, e.g. not enough fake GPUs:
// pods with the same reason are named together, and the scheduler's reason is cut after its
// first sentence (the rest is preemption detail).
func (r *Reconciler) pendingReasons(ctx context.Context, is *InferenceSet) (string, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(is.Namespace), client.MatchingLabels{LabelCreatedBy: is.Name}); err != nil {
		return "", fmt.Errorf("listing pods of InferenceSet %s/%s: %w", is.Namespace, is.Name, err)
	}
	return summarisePending(pods.Items), nil
}

func summarisePending(pods []corev1.Pod) string {
	byReason := map[string][]string{}
	var reasons []string
	for _, p := range pods {
		if p.Status.Phase != corev1.PodPending || !p.DeletionTimestamp.IsZero() {
			continue
		}
		why := "Pending"
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				msg, _, _ := strings.Cut(c.Message, ". ")
				why = "Pending (" + c.Reason + ": " + strings.TrimSuffix(msg, ".") + ")"
			}
		}
		if _, ok := byReason[why]; !ok {
			reasons = append(reasons, why)
		}
		byReason[why] = append(byReason[why], p.Name)
	}
	slices.Sort(reasons)
	var out []string
	for _, why := range reasons {
		names := byReason[why]
		slices.Sort(names)
		out = append(out, strings.Join(names, ", ")+" "+why)
	}
	return strings.Join(out, "; ")
}

func (r *Reconciler) writeStatus(ctx context.Context, is *InferenceSet, ready int32, cond metav1.Condition) error {
	st := is.Status
	st.Conditions = slices.Clone(is.Status.Conditions)
	st.Replicas = is.DesiredReplicas()
	st.ReadyReplicas = ready
	st.Selector = Selector(is.Name)
	st.ObservedGeneration = is.Generation
	cond.ObservedGeneration = is.Generation
	meta.SetStatusCondition(&st.Conditions, cond)
	if equality.Semantic.DeepEqual(st, is.Status) {
		return nil
	}
	base := is.DeepCopy()
	is.Status = st
	if err := r.Client.Status().Patch(ctx, is, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("updating InferenceSet %s/%s status: %w", is.Namespace, is.Name, err)
	}
	return nil
}
