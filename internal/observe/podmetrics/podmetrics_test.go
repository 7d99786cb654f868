package podmetrics_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inference-sandbox/sandbox/internal/apiservertest"
	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

const model = "phi-4-mini"

func chat(t *testing.T, base string, n int) {
	t.Helper()
	for range n {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat: %s", resp.Status)
		}
	}
}

// TestScrapeWorkerPool scrapes real simulators next to a hanging, a failing and a garbled
// endpoint: every healthy pod's counters come back, each broken one has its own error, the hung
// one costs one timeout, and no more than Workers scrapes ever run at once.
func TestScrapeWorkerPool(t *testing.T) {
	slow := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond) // long enough for scrapes to overlap
			h.ServeHTTP(w, r)
		})
	}
	urls := map[string]string{}
	var targets []podmetrics.Target
	for i := range 6 {
		p := stacktest.StartSim(t, model, fmt.Sprintf("pod-%d", i), int64(i+1), nil)
		chat(t, p.URL, i)
		ts := httptest.NewServer(slow(p.Sim))
		t.Cleanup(ts.Close)
		urls[p.Name] = ts.URL
		targets = append(targets, podmetrics.Target{Namespace: "models", Pod: p.Name})
	}
	broken := map[string]http.HandlerFunc{
		"hung":    func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		"failing": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"garbled": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "vllm:request_success_total{ not metrics")
		},
	}
	for name, h := range broken {
		ts := httptest.NewServer(slow(h))
		t.Cleanup(ts.Close)
		urls[name] = ts.URL
		targets = append(targets, podmetrics.Target{Namespace: "models", Pod: name})
	}
	// The pool's bound is on the scraper's side: count fetches in progress there (a server
	// may still be writing a response whose client already gave up).
	var inFlight, peak atomic.Int64
	fetch := podmetrics.HTTPFetch(http.DefaultClient, func(t podmetrics.Target) string { return urls[t.Pod] })
	const timeout = 2 * time.Second // generous: healthy scrapes must not time out on a loaded machine
	s := &podmetrics.Scraper{
		Fetch: func(ctx context.Context, t podmetrics.Target) ([]byte, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			return fetch(ctx, t)
		},
		Workers: 3, Timeout: timeout,
	}
	start := time.Now()
	results := s.Scrape(t.Context(), targets)
	took := time.Since(start)
	if len(results) != len(targets) {
		t.Fatalf("%d results for %d targets", len(results), len(targets))
	}
	for i, r := range results {
		if r.Target != targets[i] {
			t.Errorf("result %d is for %v, want %v", i, r.Target, targets[i])
		}
		if r.Time.IsZero() || r.Took <= 0 {
			t.Errorf("%s: no timestamp", r.Target.Pod)
		}
		if i < 6 {
			if r.Err != nil {
				t.Errorf("%s: %v", r.Target.Pod, r.Err)
				continue
			}
			if got := podmetrics.Sum(r.Families, podmetrics.RequestSuccessTotal); got != float64(i) {
				t.Errorf("%s: %g requests, want %d", r.Target.Pod, got, i)
			}
			if got := podmetrics.Sum(r.Families, podmetrics.RequestSuccessTotal, "model_name", "other"); got != 0 {
				t.Errorf("%s: label filter let %g through", r.Target.Pod, got)
			}
			continue
		}
		if r.Err == nil {
			t.Errorf("%s: no error", r.Target.Pod)
		}
	}
	if hung := results[6+indexOf(targets[6:], "hung")]; hung.Took < timeout || hung.Took > timeout+time.Second {
		t.Errorf("hung scrape took %s, want the %s timeout", hung.Took, timeout)
	}
	// The hung scrape holds one worker for the whole timeout while the other two finish the
	// rest: the round lasts one timeout, not one per stuck pod.
	if took > timeout+2*time.Second {
		t.Errorf("scrape round took %s", took)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("at most %d scrapes ran at once; want the pool's 3", p)
	}
}

func indexOf(ts []podmetrics.Target, pod string) int {
	for i, t := range ts {
		if t.Pod == pod {
			return i
		}
	}
	return -1
}

// hostIP is a non-loopback address of this machine: the API server refuses to proxy to
// loopback, and nothing may leave the machine, so the "pod" listens on a local interface.
func hostIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address to stand in for a pod IP")
	return ""
}

// TestModelCounterThroughAPIServer runs a real kube-apiserver: ModelPods finds the model's
// serving pods by label, and the counter reads the simulators' metrics through the API
// server's pod proxy (the same request the dashboard makes in a cluster).
func TestModelCounterThroughAPIServer(t *testing.T) {
	ip := hostIP(t)
	cfg := apiservertest.Start(t, nil)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "models"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	ports := map[string]int{}
	for i, pod := range []string{"phi-4-mini-0-0", "phi-4-mini-1-0", "phi-4-mini-1-1", "other-0-0", "phi-4-mini-2-0"} {
		p := stacktest.StartSim(t, model, pod, int64(i+1), func(*sim.Config) {})
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Skipf("listening on %s: %v", ip, err)
		}
		srv := &http.Server{Handler: p.Sim}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		chat(t, p.URL, i+1)
		port := ln.Addr().(*net.TCPAddr).Port

		owner, index := model, "0"
		switch pod {
		case "other-0-0":
			owner = "other"
		case "phi-4-mini-1-1":
			index = "1" // a non-serving rank: not in the pool
		}
		obj := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "models", Labels: map[string]string{
				inferenceset.LabelCreatedBy: owner, inferenceset.LabelPodIndex: index}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sim", Image: "sim"}}},
		}
		created, err := cs.CoreV1().Pods("models").Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		phase := corev1.PodRunning
		if pod == "phi-4-mini-2-0" {
			phase = corev1.PodPending // not running yet: not scraped
		}
		created.Status = corev1.PodStatus{Phase: phase, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if _, err := cs.CoreV1().Pods("models").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if owner == model && index == "0" && phase == corev1.PodRunning {
			want[pod] = float64(i + 1)
		}
		// The pod proxy dials podIP:<port named in the URL>, so each "pod" keeps its own port.
		ports[pod] = port
	}
	targets, err := podmetrics.ModelPods(ctx, cs, "models", model)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 2 || targets[0].Pod != "phi-4-mini-0-0" || targets[1].Pod != "phi-4-mini-1-0" || targets[0].Port != inferenceset.ServingPort {
		t.Fatalf("model pods: %+v", targets)
	}
	c := &podmetrics.Counter{
		Scraper: &podmetrics.Scraper{Fetch: podmetrics.ProxyFetch(cs), Timeout: 5 * time.Second},
		Targets: func(ctx context.Context) ([]podmetrics.Target, error) {
			ts, err := podmetrics.ModelPods(ctx, cs, "models", model)
			for i := range ts {
				ts[i].Port = ports[ts[i].Pod]
			}
			return ts, err
		},
	}
	got, err := c.Counts(ctx)
	if err != nil {
		t.Fatalf("counts through the pod proxy: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for pod, n := range want {
		if got[pod] != n {
			t.Errorf("%s: %g requests through the proxy, want %g", pod, got[pod], n)
		}
	}
}
