package epp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// scriptedServer is a model server's /metrics whose waiting queue the test sets.
type scriptedServer struct {
	addr    string
	waiting atomic.Int64
}

func startScripted(t testing.TB, n int) []*scriptedServer {
	t.Helper()
	var out []*scriptedServer
	for range n {
		s := &scriptedServer{}
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} %d\n"+
				"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 1\n"+
				"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.1\n", s.waiting.Load())
		}))
		t.Cleanup(ts.Close)
		s.addr = strings.TrimPrefix(ts.URL, "http://")
		out = append(out, s)
	}
	return out
}

func scriptedSpecs(ss []*scriptedServer) []datastore.Spec {
	var addrs []string
	for _, s := range ss {
		addrs = append(addrs, s.addr)
	}
	return staticSpecs(addrs...)
}

// waitQueue waits until the picker has scraped the given waiting count from addr.
func waitQueue(t testing.TB, srv *Server, addr string, waiting int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range srv.Store().Endpoints() {
			if e.Address == addr && e.Metrics().WaitingQueueSize == waiting && e.Fresh(time.Now(), time.Second) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the picker never saw %d waiting on %s", waiting, addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pick runs one request phase and returns the chosen endpoint, or the immediate response.
func pick(t testing.TB, srv *Server, prompt string, headers ...string) *exchangeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel() // ends the stream: the endpoint's in-flight count drops again
	body := []byte(fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":4}`, prompt))
	res, _, err := sendRequest(ctx, dial(t, srv), "/v1/completions", body, 1<<16, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// familyPrompt is a long shared prefix (one "family", as a system prompt or a document) with a
// short distinct tail per request.
func familyPrompt(i int) string {
	return strings.Repeat("You are a careful assistant for the shipping desk. ", 40) + fmt.Sprintf("Question %d?", i)
}

// TestUtilizationFilterUnpinsAHotPrefix reproduces the measured hot spot: with the production
// weights (queue 2, kv 2, prefix 3) a prompt family stays on the pod that cached it however
// deep that pod's queue gets. With the utilization-detector as a profile filter the deep pod is
// dropped and the family moves to an idle pod.
func TestUtilizationFilterUnpinsAHotPrefix(t *testing.T) {
	const withFilter = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: utilization-detector
  # 2s rather than upstream's 200ms: the test machine is shared and a late scrape must not
  # count as saturation here.
  parameters: {metricsStalenessThreshold: 2s}
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: utilization-detector
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: prefix-cache-scorer, weight: 3}
`
	for _, tc := range []struct {
		name       string
		config     string
		wantPinned bool
	}{
		{"production weights only", scheduling.DefaultConfig, true},
		{"with the utilization filter", withFilter, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods := startScripted(t, 4)
			srv := startPicker(t, tc.config, scriptedSpecs(pods))
			waitScraped(t, srv)

			// The family's first request lands somewhere and that pod caches the prefix.
			first := pick(t, srv, familyPrompt(0))
			if first.immediate != nil {
				t.Fatalf("first request rejected: %s", first.immediate.GetBody())
			}
			hot := first.dest
			// Traffic piles up on it: a queue twice the detector's threshold of 5.
			for _, p := range pods {
				if p.addr == hot {
					p.waiting.Store(10)
				}
			}
			waitQueue(t, srv, hot, 10)

			counts := map[string]int{}
			for i := 1; i <= 20; i++ {
				res := pick(t, srv, familyPrompt(i))
				if res.immediate != nil {
					t.Fatalf("request %d rejected: %s", i, res.immediate.GetBody())
				}
				counts[res.dest]++
			}
			t.Logf("hot pod %s; destinations %v", hot, counts)
			if tc.wantPinned {
				if counts[hot] != 20 {
					t.Errorf("without the filter the family should stay pinned to %s: %v", hot, counts)
				}
				return
			}
			if counts[hot] != 0 {
				t.Errorf("the deep-queue pod %s still got %d of 20 requests: %v", hot, counts[hot], counts)
			}
			if len(counts) == 0 {
				t.Error("no request was routed")
			}
		})
	}
}

// TestSheddableRequestsAreRejectedWhenSaturated drives legacy admission through the ext_proc
// server: only requests whose InferenceObjective has a negative priority are shed, and only
// while the pool is saturated.
func TestSheddableRequestsAreRejectedWhenSaturated(t *testing.T) {
	pods := startScripted(t, 2)
	for _, p := range pods {
		p.waiting.Store(10) // score 2 each with the default threshold of 5: pool saturation 2
	}
	// No saturationDetector in the config: the default utilization detector applies.
	srv := startPicker(t, "", scriptedSpecs(pods))
	for _, p := range pods {
		waitQueue(t, srv, p.addr, 10)
	}
	srv.Objectives().Set("batch", -1)
	srv.Objectives().Set("interactive", 0)
	srv.Objectives().Set("critical", 5)

	res := pick(t, srv, "summarise the report", objectiveHeader, "batch")
	errorOf(t, res, http.StatusTooManyRequests, "resource_exhausted")
	if msg := string(res.immediate.GetBody()); !strings.Contains(msg, "inference error: ResourceExhausted - pool saturated") ||
		!strings.Contains(msg, `\"batch\"`) {
		t.Errorf("429 body %s", msg)
	}
	for _, hdr := range [][]string{
		{objectiveHeader, "interactive"}, {objectiveHeader, "critical"},
		{objectiveHeader, "no-such-objective"}, // unknown: priority 0
		nil,                                    // no objective: priority 0
	} {
		if res := pick(t, srv, "summarise the report", hdr...); res.immediate != nil {
			t.Errorf("objective %v rejected: %s", hdr, res.immediate.GetBody())
		}
	}

	// The priority reaches inference_objective_request_total, and the 429 its error counter.
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`inference_objective_request_total{model_name="m",priority="5",target_model_name="m"} 1`,
		`inference_objective_request_total{model_name="m",priority="0",target_model_name="m"} 3`,
		`inference_objective_request_error_total{error_code="ResourceExhausted",model_name="m",target_model_name="m"} 1`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The queues drain: the same sheddable request is admitted.
	for _, p := range pods {
		p.waiting.Store(0)
	}
	for _, p := range pods {
		waitQueue(t, srv, p.addr, 0)
	}
	// Fresh metrics within the default detector's 200ms are needed; retry briefly in case a
	// scrape on this shared machine came late.
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := pick(t, srv, "summarise the report", objectiveHeader, "batch")
		if res.immediate == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sheddable request still rejected on an idle pool: %s", res.immediate.GetBody())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
