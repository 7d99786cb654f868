// Package podmetrics scrapes pods' Prometheus /metrics through the API server's pod proxy (or
// plain HTTP) on a bounded worker pool with a per-pod timeout, so one slow or dead pod never
// delays the others. The load generator and the dashboard share it.
package podmetrics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
)

// Defaults of a Scraper.
const (
	DefaultWorkers = 8
	DefaultTimeout = 2 * time.Second
	// maxBody bounds one scrape: a simulator's exposition is a few tens of kB.
	maxBody = 8 << 20
)

// Target is one pod's metrics endpoint.
type Target struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Port      int    `json:"port"`
	// Path defaults to /metrics.
	Path string `json:"path,omitempty"`
}

func (t Target) path() string {
	if t.Path == "" {
		return "/metrics"
	}
	return t.Path
}

// Result is one pod's scrape: its metric families, or why there are none.
type Result struct {
	Target   Target
	Families map[string]*dto.MetricFamily
	Err      error
	// Time is when the scrape ended; Took how long it took.
	Time time.Time
	Took time.Duration
}

// FetchFunc returns the raw exposition of one target.
type FetchFunc func(ctx context.Context, t Target) ([]byte, error)

// ProxyFetch reads a pod's metrics through the API server pod proxy
// (/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/metrics), which works from outside the
// cluster without port-forwards and is subject to the caller's RBAC (pods/proxy get).
func ProxyFetch(cs kubernetes.Interface) FetchFunc {
	return func(ctx context.Context, t Target) ([]byte, error) {
		b, err := cs.CoreV1().RESTClient().Get().
			Namespace(t.Namespace).Resource("pods").Name(t.Pod + ":" + strconv.Itoa(t.Port)).
			SubResource("proxy").Suffix(t.path()).
			DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("pod proxy %s/%s:%d%s: %w", t.Namespace, t.Pod, t.Port, t.path(), err)
		}
		return b, nil
	}
}

// HTTPFetch reads metrics with a plain GET of baseURL(t)+path, for endpoints this machine
// reaches directly (simulators on loopback).
func HTTPFetch(c *http.Client, baseURL func(Target) string) FetchFunc {
	return func(ctx context.Context, t Target) ([]byte, error) {
		u := baseURL(t) + t.path()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return b, nil
	}
}

// Scraper scrapes many targets at once.
type Scraper struct {
	Fetch FetchFunc
	// Workers bounds the scrapes in flight; Timeout bounds each one.
	Workers int
	Timeout time.Duration
}

// Scrape scrapes every target and returns one result per target, in the targets' order. It
// returns when every scrape ended or timed out.
func (s *Scraper) Scrape(ctx context.Context, targets []Target) []Result {
	workers, timeout := s.Workers, s.Timeout
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	out := make([]Result, len(targets))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				out[i] = s.one(ctx, targets[i], timeout)
			}
		}()
	}
	for i := range targets {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

func (s *Scraper) one(ctx context.Context, t Target, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	r := Result{Target: t}
	b, err := s.Fetch(ctx, t)
	if err == nil && len(b) > maxBody {
		err = fmt.Errorf("metrics of %s/%s exceed %d bytes", t.Namespace, t.Pod, maxBody)
	}
	if err == nil {
		r.Families, err = Parse(bytes.NewReader(b))
		if err != nil {
			err = fmt.Errorf("metrics of %s/%s: %w", t.Namespace, t.Pod, err)
		}
	}
	r.Err = err
	r.Time = time.Now()
	r.Took = r.Time.Sub(start)
	return r
}

// Parse reads the Prometheus text exposition format; vLLM's names contain ':' which the
// legacy validation accepts, UTF-8 validation keeps any future name readable too.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// Sum adds up every series of a counter, gauge or untyped family (0 when absent); labels
// narrows it to series carrying all the given name=value pairs.
func Sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		total += Value(m)
	}
	return total
}

// Value is a counter's, gauge's or untyped sample's value; 0 for other kinds.
func Value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == kv[i] && l.GetValue() == kv[i+1]
		}) {
			return false
		}
	}
	return true
}

// ModelPods lists the serving pods of a model (InferenceSet) that have an IP, as the model's
// InferencePool selects them: pod index 0 of each replica, on the simulator's port.
func ModelPods(ctx context.Context, cs kubernetes.Interface, namespace, model string) ([]Target, error) {
	sel := inferenceset.LabelCreatedBy + "=" + model + "," + inferenceset.LabelPodIndex + "=0"
	l, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing pods of model %s in %s: %w", model, namespace, err)
	}
	var out []Target
	for _, p := range l.Items {
		if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, Target{Namespace: p.Namespace, Pod: p.Name, Port: inferenceset.ServingPort})
	}
	slices.SortFunc(out, func(a, b Target) int {
		switch {
		case a.Pod < b.Pod:
			return -1
		case a.Pod > b.Pod:
			return 1
		}
		return 0
	})
	return out, nil
}

// RequestSuccessTotal is the simulator's (and vLLM's) count of finished requests.
const RequestSuccessTotal = "vllm:request_success_total"

// Counter reads one counter from every target: a load.PodCounter.
type Counter struct {
	Scraper *Scraper
	// Targets lists the pods at the time of the call (pods come and go while load runs).
	Targets func(ctx context.Context) ([]Target, error)
	// Metric defaults to RequestSuccessTotal.
	Metric string
}

// Counts returns each pod's counter, summed over its series. Any failed scrape fails the
// whole reading: a missing pod would turn into a wrong share.
func (c *Counter) Counts(ctx context.Context) (map[string]float64, error) {
	targets, err := c.Targets(ctx)
	if err != nil {
		return nil, err
	}
	metric := c.Metric
	if metric == "" {
		metric = RequestSuccessTotal
	}
	out := map[string]float64{}
	for _, r := range c.Scraper.Scrape(ctx, targets) {
		if r.Err != nil {
			return nil, r.Err
		}
		out[r.Target.Pod] = Sum(r.Families, metric)
	}
	return out, nil
}

// NewModelCounter counts a model's finished requests per pod through the API server.
func NewModelCounter(cs kubernetes.Interface, namespace, model string) *Counter {
	return &Counter{
		Scraper: &Scraper{Fetch: ProxyFetch(cs)},
		Targets: func(ctx context.Context) ([]Target, error) { return ModelPods(ctx, cs, namespace, model) },
	}
}
