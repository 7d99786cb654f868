package authz

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// SecretStore is the KeyStore of a running cluster: an informer over the Secrets named
// llm-api-key in every namespace. The field selector keeps every other Secret of the cluster out
// of this process's memory, and the transform drops what the check never reads.
type SecretStore struct {
	factory informers.SharedInformerFactory
	lister  corelisters.SecretLister
	synced  cache.InformerSynced
}

// NewSecretStore prepares the informer; Start runs it.
func NewSecretStore(cs kubernetes.Interface) *SecretStore {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", SecretName).String()
		}),
		informers.WithTransform(keepOnlyKey),
	)
	inf := f.Core().V1().Secrets()
	return &SecretStore{factory: f, lister: inf.Lister(), synced: inf.Informer().HasSynced}
}

// keepOnlyKey strips a cached Secret down to its name and the apiKey entry.
func keepOnlyKey(obj any) (any, error) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // tombstones pass as they are
	}
	slim := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: sec.Name, Namespace: sec.Namespace, UID: sec.UID, ResourceVersion: sec.ResourceVersion,
	}}
	if v, ok := sec.Data[DataKey]; ok {
		slim.Data = map[string][]byte{DataKey: v}
	}
	return slim, nil
}

// Start runs the informer until ctx ends; Shutdown waits for it.
func (s *SecretStore) Start(ctx context.Context) { s.factory.Start(ctx.Done()) }

// Shutdown waits for the informer goroutines after the Start context ended.
func (s *SecretStore) Shutdown() { s.factory.Shutdown() }

// WaitForSync blocks until the first list is in the cache or ctx ends.
func (s *SecretStore) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), s.synced) {
		return fmt.Errorf("syncing the %s Secret cache: %w", SecretName, context.Cause(ctx))
	}
	return nil
}

var errNotSynced = errors.New("the Secret cache has not synced yet")

// APIKey implements KeyStore.
func (s *SecretStore) APIKey(namespace string) ([]byte, bool, error) {
	if !s.synced() {
		return nil, false, errNotSynced
	}
	sec, err := s.lister.Secrets(namespace).Get(SecretName)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading Secret %s/%s from the cache: %w", namespace, SecretName, err)
	}
	key := sec.Data[DataKey]
	return key, len(key) > 0, nil
}
