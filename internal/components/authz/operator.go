package authz

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// NewKey makes an API key: "sk-" (the prefix upstream's hybrid auth mode uses to tell API keys
// from JWTs, kaito-keda-auth-facts §4.3) and 128 random bits in base32.
func NewKey() (string, error) { return "sk-" + rand.Text(), nil }

// Reconciler turns each APIKey into the Secret llm-api-key of its namespace. Level-triggered:
// it reads the APIKey and the Secret and repairs the difference. The key is made once, when the
// Secret is created (or found without a key), and is never replaced by a later reconcile.
type Reconciler struct {
	Client client.Client
	// NewKey generates keys; NewKey (the package function) when nil.
	NewKey func() (string, error)
	// Recorder receives events for `kubectl describe`; optional.
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler for APIKeys and the Secrets they own.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("apikey").
		For(&APIKey{}).
		// Owned Secrets lead back to their APIKey: a deleted or edited Secret is repaired, and
		// after a restart the initial list finds Secrets whose APIKey is gone.
		Owns(&corev1.Secret{}).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var key APIKey
	if err := r.Client.Get(ctx, req.NamespacedName, &key); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.deleteOrphan(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, fmt.Errorf("reading APIKey %s: %w", req.NamespacedName, err)
	}
	if !key.DeletionTimestamp.IsZero() {
		// The garbage collector removes the owned Secret once the APIKey is gone.
		return ctrl.Result{}, nil
	}

	var sec corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: SecretName}, &sec)
	switch {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, r.create(ctx, &key)
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading Secret %s/%s: %w", key.Namespace, SecretName, err)
	}

	if owner := metav1.GetControllerOf(&sec); owner != nil && owner.UID != key.UID {
		if isAPIKeyRef(owner) && owner.Name == key.Name {
			// Left over from an earlier APIKey of the same name that the garbage collector has not
			// reached yet: that key belonged to a deleted object, so it must not carry over.
			if err := r.deleteSecret(ctx, &sec); err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{}, r.create(ctx, &key)
		}
		msg := fmt.Sprintf("Secret %s is controlled by %s %s; one APIKey per namespace", SecretName, owner.Kind, owner.Name)
		return ctrl.Result{}, r.setStatus(ctx, &key, metav1.ConditionFalse, "SecretOwnedElsewhere", msg)
	}

	// Adopt a Secret nobody controls (e.g. made by hand before the APIKey), keeping its key, and
	// fill in a key that is missing; an existing key is never replaced.
	patch := client.MergeFrom(sec.DeepCopy())
	changed := false
	if metav1.GetControllerOf(&sec) == nil {
		if err := controllerutil.SetControllerReference(&key, &sec, r.Client.Scheme()); err != nil {
			return ctrl.Result{}, fmt.Errorf("adopting Secret %s/%s: %w", sec.Namespace, SecretName, err)
		}
		changed = true
	}
	if len(sec.Data[DataKey]) == 0 {
		k, err := r.newKey()
		if err != nil {
			return ctrl.Result{}, err
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[DataKey] = []byte(k)
		changed = true
	}
	if changed {
		if err := r.Client.Patch(ctx, &sec, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("repairing Secret %s/%s: %w", sec.Namespace, SecretName, err)
		}
		r.event(&key, "Normal", "SecretRepaired", "Repair", "Secret %s adopted or given a missing key", SecretName)
	}
	return ctrl.Result{}, r.setStatus(ctx, &key, metav1.ConditionTrue, "SecretReady", "Secret "+SecretName+" holds the key")
}

func (r *Reconciler) create(ctx context.Context, key *APIKey) error {
	k, err := r.newKey()
	if err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SecretName,
			Namespace: key.Namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "stackd-authz"},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{DataKey: []byte(k)},
	}
	if err := controllerutil.SetControllerReference(key, sec, r.Client.Scheme()); err != nil {
		return fmt.Errorf("owning Secret %s/%s: %w", key.Namespace, SecretName, err)
	}
	if err := r.Client.Create(ctx, sec); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// The cache had not seen it yet; the next reconcile reads it. Never overwrite: it may
			// hold a key clients already use.
			return fmt.Errorf("secret %s/%s appeared concurrently, retrying: %w", key.Namespace, SecretName, err)
		}
		return fmt.Errorf("creating Secret %s/%s: %w", key.Namespace, SecretName, err)
	}
	r.event(key, "Normal", "SecretCreated", "Create", "Generated a key in Secret %s", SecretName)
	return r.setStatus(ctx, key, metav1.ConditionTrue, "SecretReady", "Secret "+SecretName+" holds the key")
}

// deleteOrphan removes the namespace's Secret when the APIKey that controlled it is gone.
// Normally the garbage collector does this through the owner reference; doing it here too keeps
// the promise on clusters without one and closes the window before it runs.
func (r *Reconciler) deleteOrphan(ctx context.Context, gone types.NamespacedName) error {
	var sec corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: gone.Namespace, Name: SecretName}, &sec)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", gone.Namespace, SecretName, err)
	}
	if owner := metav1.GetControllerOf(&sec); owner == nil || !isAPIKeyRef(owner) || owner.Name != gone.Name {
		return nil
	}
	return r.deleteSecret(ctx, &sec)
}

func (r *Reconciler) deleteSecret(ctx context.Context, sec *corev1.Secret) error {
	// The UID precondition keeps a Secret recreated in the meantime safe.
	err := r.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return nil
}

func (r *Reconciler) setStatus(ctx context.Context, key *APIKey, st metav1.ConditionStatus, reason, msg string) error {
	before := key.DeepCopy()
	key.Status.ObservedGeneration = key.Generation
	key.Status.SecretName = ""
	if st == metav1.ConditionTrue {
		key.Status.SecretName = SecretName
	}
	meta.SetStatusCondition(&key.Status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: st, Reason: reason, Message: msg, ObservedGeneration: key.Generation,
	})
	if equalStatus(before.Status, key.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, key, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("updating status of APIKey %s/%s: %w", key.Namespace, key.Name, err)
	}
	return nil
}

func equalStatus(a, b APIKeyStatus) bool {
	if a.SecretName != b.SecretName || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
			x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

func (r *Reconciler) newKey() (string, error) {
	gen := r.NewKey
	if gen == nil {
		gen = NewKey
	}
	k, err := gen()
	if err != nil {
		return "", fmt.Errorf("generating an API key: %w", err)
	}
	return k, nil
}

func (r *Reconciler) event(key *APIKey, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(key, nil, typ, reason, action, note, args...)
	}
}

func isAPIKeyRef(ref *metav1.OwnerReference) bool {
	return ref.Kind == "APIKey" && ref.APIVersion == GroupVersion.String()
}
