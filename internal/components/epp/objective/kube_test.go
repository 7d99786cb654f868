package objective

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/crds"
	"github.com/inference-sandbox/sandbox/internal/kube"
)

func objectiveObj(ns, name, pool string, priority *int) *unstructured.Unstructured {
	spec := map[string]any{"poolRef": map[string]any{"name": pool}}
	if priority != nil {
		spec["priority"] = int64(*priority)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + Version, "kind": Kind,
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

func ptr(i int) *int { return &i }

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherAgainstAPIServer runs the watcher against a real kube-apiserver that at first does
// not serve InferenceObjectives; the CRD is installed while it runs.
func TestWatcherAgainstAPIServer(t *testing.T) {
	cfg := apiservertest.Start(t, nil)
	kc, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "models"
	if _, err := kc.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	store := NewStore()
	w := &Watcher{Dynamic: kc.Dynamic, Discovery: kc.Clientset.Discovery(), Namespace: ns, PoolName: "phi-pool",
		RecheckInterval: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, store) }()

	// Without the CRD the watcher waits quietly and knows nothing.
	time.Sleep(300 * time.Millisecond)
	if store.Len() != 0 {
		t.Fatalf("store has %d objectives before the CRD exists", store.Len())
	}

	files, err := crds.InferenceExtension(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		if f.Name != crds.InferenceObjectiveFile {
			continue
		}
		if objs, err = kube.Decode(f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	res := kc.Dynamic.Resource(GVR).Namespace(ns)
	create := func(o *unstructured.Unstructured) {
		t.Helper()
		var err error
		waitFor(t, "the CRD to serve "+o.GetName(), func() bool {
			_, err = res.Create(ctx, o, metav1.CreateOptions{})
			return err == nil
		})
	}
	create(objectiveObj(ns, "batch", "phi-pool", ptr(-1)))
	create(objectiveObj(ns, "chat", "phi-pool", nil)) // unset priority is 0
	create(objectiveObj(ns, "critical", "phi-pool", ptr(10)))
	create(objectiveObj(ns, "elsewhere", "other-pool", ptr(-5)))
	// An objective of the same name in another namespace is not ours.
	if _, err := kc.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Dynamic.Resource(GVR).Namespace("other").Create(ctx, objectiveObj("other", "foreign", "phi-pool", ptr(-3)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	want := func(state map[string]int) func() bool {
		return func() bool {
			if store.Len() != len(state) {
				return false
			}
			for name, p := range state {
				if got, ok := store.Priority(name); !ok || got != p {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "the pool's three objectives", want(map[string]int{"batch": -1, "chat": 0, "critical": 10}))
	if _, ok := store.Priority("elsewhere"); ok {
		t.Error("an objective of another pool was picked up")
	}

	// Priority change, poolRef moving away, deletion.
	u, err := res.Get(ctx, "chat", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, int64(-2), "spec", "priority")
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err = res.Get(ctx, "critical", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, "other-pool", "spec", "poolRef", "name")
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := res.Delete(ctx, "batch", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "updates and deletion", want(map[string]int{"chat": -2}))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watcher returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("watcher did not stop with its context")
	}
}

func TestObjectiveDefaults(t *testing.T) {
	o, err := FromUnstructured(objectiveObj("ns", "x", "pool", nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.PriorityValue() != 0 || !o.For(DefaultPoolGroup, "pool") || o.For(DefaultPoolGroup, "other") || o.For("example.com", "pool") {
		t.Errorf("defaults wrong: %+v", o.Spec)
	}
	o.Spec.PoolRef.Kind = "Service"
	if o.For(DefaultPoolGroup, "pool") {
		t.Error("a poolRef of another kind matched")
	}
	bad := objectiveObj("ns", "y", "pool", nil)
	bad.Object["spec"] = map[string]any{"priority": "high"}
	if _, err := FromUnstructured(bad); err == nil {
		t.Error("a string priority converted")
	}
}

// TestWatcherWithFakeClients covers the same event handling without a kube-apiserver, so it
// runs on machines without envtest binaries.
func TestWatcherWithFakeClients(t *testing.T) {
	const ns = "models"
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{GVR: Kind + "List"},
		objectiveObj(ns, "batch", "phi-pool", ptr(-1)), objectiveObj(ns, "elsewhere", "other-pool", ptr(3)))
	disc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{{
		GroupVersion: GVR.GroupVersion().String(),
		APIResources: []metav1.APIResource{{Name: Resource, Namespaced: true, Kind: Kind}},
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := NewStore()
	w := &Watcher{Dynamic: dyn, Discovery: disc, Namespace: ns, PoolName: "phi-pool",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, store) }()

	waitFor(t, "the existing objective", func() bool { p, ok := store.Priority("batch"); return ok && p == -1 })
	res := dyn.Resource(GVR).Namespace(ns)
	if _, err := res.Create(ctx, objectiveObj(ns, "chat", "phi-pool", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Update(ctx, objectiveObj(ns, "batch", "other-pool", ptr(-1)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "create and poolRef change", func() bool {
		_, batch := store.Priority("batch")
		p, chat := store.Priority("chat")
		return !batch && chat && p == 0 && store.Len() == 1
	})
	if err := res.Delete(ctx, "chat", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deletion", func() bool { return store.Len() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watcher returned %v", err)
	}

	// A server without the CRD: nothing is watched, and Run still ends with its context.
	ctx2, cancel2 := context.WithCancel(context.Background())
	w2 := &Watcher{Dynamic: dyn, Discovery: &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}, Namespace: ns,
		PoolName: "phi-pool", RecheckInterval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	empty := NewStore()
	go func() { done <- w2.Run(ctx2, empty) }()
	time.Sleep(100 * time.Millisecond)
	cancel2()
	if err := <-done; err != nil || empty.Len() != 0 {
		t.Errorf("without the CRD: err %v, %d objectives", err, empty.Len())
	}
}
