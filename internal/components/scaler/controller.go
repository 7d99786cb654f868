package scaler

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldOwner is the server-side-apply field manager of the ScaledObjects.
const FieldOwner = "keda-kaito-scaler"

// Reconciler keeps one ScaledObject per annotated InferenceSet. Level-triggered: each pass
// reads the InferenceSet and its ScaledObject and applies the difference; the ScaledObject is
// controlled by the InferenceSet, so the garbage collector removes it with the set.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Target   Target
	Timing   Timing
}

// SetupWithManager watches InferenceSets and the ScaledObjects they control, so a ScaledObject
// edited or deleted by hand is put back.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	is := &unstructured.Unstructured{}
	is.SetGroupVersionKind(InferenceSetGVK)
	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(ScaledObjectGVK)
	return ctrl.NewControllerManagedBy(mgr).
		Named("scaledobject-provisioner").
		For(is).
		Owns(so).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	is := &unstructured.Unstructured{}
	is.SetGroupVersionKind(InferenceSetGVK)
	if err := r.Client.Get(ctx, req.NamespacedName, is); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // its ScaledObject goes with it (owner reference)
		}
		return ctrl.Result{}, fmt.Errorf("reading InferenceSet %s: %w", req.NamespacedName, err)
	}
	if is.GetDeletionTimestamp() != nil {
		return ctrl.Result{}, nil
	}
	limit, _, _ := unstructured.NestedInt64(is.Object, "spec", "nodeCountLimit")
	cfg, err := ParseConfig(is.GetAnnotations(), limit)
	if errors.Is(err, errNotRequested) {
		return ctrl.Result{}, r.cleanUp(ctx, is)
	}
	var cerr *ConfigError
	if errors.As(err, &cerr) {
		// Nothing to retry until the annotations change, which triggers a new pass.
		r.event(is, corev1.EventTypeWarning, cerr.Reason, "Autoscaling not configured: %v", cerr)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}

	current, err := r.scaledObject(ctx, is)
	if err != nil {
		return ctrl.Result{}, err
	}
	if current != nil && !IsManaged(current) {
		r.event(is, corev1.EventTypeWarning, "ScaledObjectConflict",
			"ScaledObject %s exists and is not managed by %s; leaving it alone", current.GetName(), ManagedByValue)
		return ctrl.Result{}, nil
	}
	desired := DesiredScaledObject(is, cfg, r.Target, r.Timing)
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(desired), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return ctrl.Result{}, fmt.Errorf("applying ScaledObject %s/%s: %w", desired.GetNamespace(), desired.GetName(), err)
	}
	if current == nil {
		r.event(is, corev1.EventTypeNormal, "ScaledObjectCreated",
			"ScaledObject %s created: %s per replica above %g, %d..%d replicas", desired.GetName(), cfg.MetricName, cfg.Threshold, cfg.MinReplicas, cfg.MaxReplicas)
	}
	return ctrl.Result{}, nil
}

// cleanUp deletes the ScaledObject this controller made once autoscaling is switched off.
func (r *Reconciler) cleanUp(ctx context.Context, is *unstructured.Unstructured) error {
	so, err := r.scaledObject(ctx, is)
	if err != nil || so == nil || !IsManaged(so) {
		return err
	}
	if owner := metav1.GetControllerOf(so); owner == nil || owner.UID != is.GetUID() {
		return nil
	}
	if err := r.Client.Delete(ctx, so, client.Preconditions{UID: ptr(so.GetUID())}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ScaledObject %s/%s: %w", so.GetNamespace(), so.GetName(), err)
	}
	r.event(is, corev1.EventTypeNormal, "ScaledObjectCleanedUp", "Autoscaling turned off; ScaledObject %s deleted", so.GetName())
	return nil
}

func (r *Reconciler) scaledObject(ctx context.Context, is *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(ScaledObjectGVK)
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(is), so)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ScaledObject %s/%s: %w", is.GetNamespace(), is.GetName(), err)
	}
	return so, nil
}

func (r *Reconciler) event(obj *unstructured.Unstructured, kind, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, kind, reason, "AutoProvision", format, args...)
	}
}

func ptr[T any](v T) *T { return &v }
