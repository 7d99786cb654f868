package datastore

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func pool(ports ...int64) *unstructured.Unstructured {
	var tp []any
	for _, p := range ports {
		tp = append(tp, map[string]any{"number": p})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
		"metadata": map[string]any{"name": "m-inferencepool", "namespace": "models"},
		"spec": map[string]any{
			"selector":          map[string]any{"matchLabels": map[string]any{"app": "m"}},
			"targetPorts":       tp,
			"endpointPickerRef": map[string]any{"name": "m-epp", "port": map[string]any{"number": int64(9002)}},
		},
	}}
}

func pod(name, ip string, ready bool, lbls map[string]string) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "models", Labels: lbls},
		Status:     corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func addrs(specs []Spec) string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name+"="+s.Address)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestEndpointsForPool(t *testing.T) {
	p, err := PoolFromUnstructured(pool(5000, 5001))
	if err != nil {
		t.Fatal(err)
	}
	app := map[string]string{"app": "m"}
	deleting := pod("gone", "10.0.0.9", true, app)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	restricted := pod("r", "10.0.0.4", true, app)
	restricted.Annotations = map[string]string{ActivePortsAnnotation: "5001"}
	pods := []*corev1.Pod{
		pod("a", "10.0.0.1", true, app),
		pod("b", "10.0.0.2", false, app),                          // not ready
		pod("c", "10.0.0.3", true, map[string]string{"app": "x"}), // other selector
		pod("noip", "", true, app),
		deleting, restricted,
	}
	got := addrs(EndpointsForPool(p, pods))
	want := "a-rank-0=10.0.0.1:5000 a-rank-1=10.0.0.1:5001 r-rank-1=10.0.0.4:5001"
	if got != want {
		t.Errorf("endpoints %q, want %q", got, want)
	}
	v6 := EndpointsForPool(Pool{Namespace: "models", Selector: app, TargetPorts: []int{5000}}, []*corev1.Pod{pod("six", "fd00::1", true, app)})
	if len(v6) != 1 || v6[0].Address != "[fd00::1]:5000" {
		t.Errorf("IPv6 endpoint %v", v6)
	}
}

func TestPoolErrors(t *testing.T) {
	noPorts := pool()
	if _, err := PoolFromUnstructured(noPorts); err == nil || !strings.Contains(err.Error(), "targetPorts") {
		t.Errorf("no ports: %v", err)
	}
	if _, err := PoolFromUnstructured(pool(70000)); err == nil {
		t.Error("port 70000 accepted")
	}
	noSel := pool(5000)
	unstructured.RemoveNestedField(noSel.Object, "spec", "selector")
	if _, err := PoolFromUnstructured(noSel); err == nil || !strings.Contains(err.Error(), "matchLabels") {
		t.Errorf("no selector: %v", err)
	}
}

func TestParseStatic(t *testing.T) {
	specs, err := ParseStatic("127.0.0.1:8000, [::1]:8001")
	if err != nil || addrs(specs) != "127.0.0.1:8000=127.0.0.1:8000 [::1]:8001=[::1]:8001" {
		t.Errorf("%v %v", specs, err)
	}
	for _, bad := range []string{"", "localhost", "h:0", "h:x"} {
		if _, err := ParseStatic(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStoreKeepsStateOfSurvivingEndpoints(t *testing.T) {
	s := NewStore()
	var mu sync.Mutex
	var added, removed []string
	s.Subscribe(func(a, r []*Endpoint) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range a {
			added = append(added, e.Address)
		}
		for _, e := range r {
			removed = append(removed, e.Address)
		}
	})
	s.Replace([]Spec{{Address: "10.0.0.2:1"}, {Address: "10.0.0.1:1"}})
	first := s.Endpoints()
	if len(first) != 2 || first[0].Address != "10.0.0.1:1" || !s.Synced() {
		t.Fatalf("endpoints %v", first)
	}
	first[0].AddInFlight(3)
	s.Replace([]Spec{{Address: "10.0.0.1:1", Labels: map[string]string{"k": "v"}}, {Address: "10.0.0.3:1"}})
	now := s.Endpoints()
	if now[0] != first[0] || now[0].InFlight() != 3 || now[0].Labels()["k"] != "v" {
		t.Error("surviving endpoint lost its identity, in-flight count or label update")
	}
	if strings.Join(added, ",") != "10.0.0.2:1,10.0.0.1:1,10.0.0.3:1" && strings.Join(added, ",") != "10.0.0.1:1,10.0.0.2:1,10.0.0.3:1" {
		t.Errorf("added %v", added)
	}
	if strings.Join(removed, ",") != "10.0.0.2:1" {
		t.Errorf("removed %v", removed)
	}
}

// TestKubeSourceFollowsChurn runs the informer-based discovery against fake API clients and
// checks that pods turning ready, unready and disappearing reach the store within a second.
func TestKubeSourceFollowsChurn(t *testing.T) {
	app := map[string]string{"app": "m"}
	cs := fake.NewSimpleClientset(pod("a", "10.0.0.1", true, app))
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{PoolResource("inference.networking.k8s.io"): "InferencePoolList"}, pool(5000))
	src := &KubeSource{Dynamic: dyn, Clientset: cs, Namespace: "models", Name: "m-inferencepool", Group: "inference.networking.k8s.io"}
	store := NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, store) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			var got []string
			for _, e := range store.Endpoints() {
				got = append(got, e.Address)
			}
			if strings.Join(got, " ") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 1s endpoints are %q, want %q", strings.Join(got, " "), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("10.0.0.1:5000")
	if !store.Synced() {
		t.Error("store not synced after the first list")
	}
	pods := cs.CoreV1().Pods("models")
	if _, err := pods.Create(ctx, pod("b", "10.0.0.2", true, app), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("10.0.0.1:5000 10.0.0.2:5000")
	if _, err := pods.UpdateStatus(ctx, pod("a", "10.0.0.1", false, app), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("10.0.0.2:5000")
	if err := pods.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("")
	// Changing the pool's port re-targets every pod.
	if _, err := pods.UpdateStatus(ctx, pod("a", "10.0.0.1", true, app), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("10.0.0.1:5000")
	if _, err := dyn.Resource(PoolResource("inference.networking.k8s.io")).Namespace("models").Update(ctx, pool(6000), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("10.0.0.1:6000")
}
