package authz

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestSecretStore(t *testing.T) {
	secret := func(ns, name, key string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{DataKey: []byte(key)}}
	}
	cs := fake.NewClientset(secret("models", SecretName, "sk-a"), secret("team-b", "unrelated", "sk-not-an-api-key"))
	s := NewSecretStore(cs)
	if _, _, err := s.APIKey("models"); !errors.Is(err, errNotSynced) {
		t.Errorf("before sync: err = %v, want errNotSynced", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Shutdown() }()
	s.Start(ctx)
	if err := s.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}

	expect := func(ns, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			k, ok, err := s.APIKey(ns)
			if err != nil {
				t.Fatal(err)
			}
			if (want == "" && !ok) || (ok && string(k) == want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("APIKey(%s) = %q, %v; want %q", ns, k, ok, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	expect("models", "sk-a")
	expect("team-b", "") // only Secrets named llm-api-key count

	if _, err := cs.CoreV1().Secrets("team-b").Create(ctx, secret("team-b", SecretName, "sk-b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("team-b", "sk-b")
	if _, err := cs.CoreV1().Secrets("models").Update(ctx, secret("models", SecretName, "sk-a2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("models", "sk-a2")
	if err := cs.CoreV1().Secrets("models").Delete(ctx, SecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("models", "")
}

func TestKeepOnlyKey(t *testing.T) {
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: "models", Annotations: map[string]string{"big": "x"}},
		Data:       map[string][]byte{DataKey: []byte("k"), "other": []byte("y")},
	}
	out, err := keepOnlyKey(in)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Secret)
	if len(s.Data) != 1 || string(s.Data[DataKey]) != "k" || s.Annotations != nil || s.Name != SecretName || s.Namespace != "models" {
		t.Errorf("slimmed Secret = %+v", s)
	}
}
