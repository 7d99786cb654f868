package authz

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

const ns = "models"

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func apiKey(name, uid string) *APIKey {
	return &APIKey{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(uid), Generation: 1}}
}

// operator is a reconciler over the fake client whose keys are numbered, so a test can tell a
// kept key from a regenerated one.
type operator struct {
	t *testing.T
	c client.Client
	r *Reconciler
	n int
}

func newOperator(t *testing.T, objs ...client.Object) *operator {
	o := &operator{t: t}
	o.c = fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).WithStatusSubresource(&APIKey{}).Build()
	o.r = &Reconciler{Client: o.c, NewKey: func() (string, error) { o.n++; return fmt.Sprintf("sk-test-%d", o.n), nil }}
	return o
}

func (o *operator) reconcile(name string) {
	o.t.Helper()
	if _, err := o.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}); err != nil {
		o.t.Fatalf("reconcile %s: %v", name, err)
	}
}

func (o *operator) secret() (*corev1.Secret, bool) {
	o.t.Helper()
	var s corev1.Secret
	err := o.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: SecretName}, &s)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		o.t.Fatal(err)
	}
	return &s, true
}

func (o *operator) key() string {
	o.t.Helper()
	s, ok := o.secret()
	if !ok {
		o.t.Fatal("no Secret")
	}
	return string(s.Data[DataKey])
}

func (o *operator) ready(name string) *metav1.Condition {
	o.t.Helper()
	var k APIKey
	if err := o.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &k); err != nil {
		o.t.Fatal(err)
	}
	return meta.FindStatusCondition(k.Status.Conditions, ConditionReady)
}

func TestReconcileCreatesSecretOnceAndKeepsTheKey(t *testing.T) {
	o := newOperator(t, apiKey("default", "uid-1"))
	o.reconcile("default")
	s, ok := o.secret()
	if !ok {
		t.Fatal("no Secret after the first reconcile")
	}
	if got := string(s.Data[DataKey]); got != "sk-test-1" {
		t.Errorf("key = %q", got)
	}
	owner := metav1.GetControllerOf(s)
	if owner == nil || owner.UID != "uid-1" || owner.Kind != "APIKey" || owner.APIVersion != "kaito.sh/v1alpha1" ||
		!ptr.Deref(owner.BlockOwnerDeletion, false) {
		t.Errorf("owner = %+v, want a controller reference to the APIKey so deletion collects the Secret", owner)
	}
	if c := o.ready("default"); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v", c)
	}

	for i := 0; i < 3; i++ {
		o.reconcile("default")
	}
	if got := o.key(); got != "sk-test-1" {
		t.Errorf("key after re-reconciles = %q: a reconcile rotated it", got)
	}
}

func TestReconcileRepairs(t *testing.T) {
	o := newOperator(t, apiKey("default", "uid-1"))
	o.reconcile("default")

	s, _ := o.secret()
	s.Data = map[string][]byte{"other": []byte("x")}
	if err := o.c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	o.reconcile("default")
	s, _ = o.secret()
	if got := string(s.Data[DataKey]); got != "sk-test-2" || string(s.Data["other"]) != "x" {
		t.Errorf("after the key was removed: data = %v, want a new key and other entries kept", s.Data)
	}

	if err := o.c.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	o.reconcile("default")
	if got := o.key(); got != "sk-test-3" {
		t.Errorf("after the Secret was deleted: key = %q, want it recreated", got)
	}
}

func TestReconcileAdoptsAHandMadeSecret(t *testing.T) {
	hand := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns},
		Data:       map[string][]byte{DataKey: []byte("sk-chosen-by-hand")},
	}
	o := newOperator(t, apiKey("default", "uid-1"), hand)
	o.reconcile("default")
	s, _ := o.secret()
	if string(s.Data[DataKey]) != "sk-chosen-by-hand" {
		t.Errorf("key = %q, want the existing one kept", s.Data[DataKey])
	}
	if owner := metav1.GetControllerOf(s); owner == nil || owner.UID != "uid-1" {
		t.Errorf("owner = %+v, want adopted", owner)
	}
}

func TestAPIKeyDeletionDeletesTheSecret(t *testing.T) {
	k := apiKey("default", "uid-1")
	o := newOperator(t, k)
	o.reconcile("default")
	// The fake client has no garbage collector: this is the "no GC" path.
	if err := o.c.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	o.reconcile("default")
	if _, ok := o.secret(); ok {
		t.Error("Secret survived its APIKey")
	}
	o.reconcile("default") // nothing left to do, and no error
}

func TestOrphanCleanupLeavesOtherSecretsAlone(t *testing.T) {
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns}},
		{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "kaito.sh/v1alpha1", Kind: "APIKey", Name: "another", UID: "uid-9", Controller: ptr.To(true)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: "default", UID: "uid-8", Controller: ptr.To(true)}}}},
	} {
		o := newOperator(t, s)
		o.reconcile("default") // APIKey "default" does not exist
		if _, ok := o.secret(); !ok {
			t.Errorf("Secret with owners %v was deleted for a missing APIKey default", s.OwnerReferences)
		}
	}
}

func TestSecondAPIKeyInANamespaceConflicts(t *testing.T) {
	o := newOperator(t, apiKey("default", "uid-1"), apiKey("second", "uid-2"))
	o.reconcile("default")
	o.reconcile("second")
	if got := o.key(); got != "sk-test-1" {
		t.Errorf("key = %q, the second APIKey must not take over", got)
	}
	s, _ := o.secret()
	if owner := metav1.GetControllerOf(s); owner.UID != "uid-1" {
		t.Errorf("owner = %+v", owner)
	}
	c := o.ready("second")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "SecretOwnedElsewhere" || !strings.Contains(c.Message, "default") {
		t.Errorf("second's Ready = %+v", c)
	}
}

func TestRecreatedAPIKeyGetsANewKey(t *testing.T) {
	stale := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "kaito.sh/v1alpha1", Kind: "APIKey", Name: "default", UID: "uid-old", Controller: ptr.To(true)}}},
		Data: map[string][]byte{DataKey: []byte("sk-of-the-deleted-apikey")},
	}
	o := newOperator(t, apiKey("default", "uid-new"), stale)
	o.reconcile("default")
	s, _ := o.secret()
	if string(s.Data[DataKey]) != "sk-test-1" || metav1.GetControllerOf(s).UID != "uid-new" {
		t.Errorf("Secret = %v owned by %v, want a fresh key owned by the new APIKey", s.Data, metav1.GetControllerOf(s))
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "sk-") || len(k) < 3+26 {
			t.Fatalf("key %q: want sk- and at least 128 random bits", k)
		}
		if seen[k] {
			t.Fatalf("key %q generated twice", k)
		}
		seen[k] = true
	}
}
