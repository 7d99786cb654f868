package scrape

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// page is a vLLM-style exposition with the families we read buried among ones we skip.
func page(waiting, running int, kv float64) string {
	return fmt.Sprintf(`# HELP vllm:num_requests_running Number of requests currently running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} %d
# HELP vllm:num_requests_waiting_total_fake A family whose name extends a wanted one.
# TYPE vllm:num_requests_waiting_total_fake gauge
vllm:num_requests_waiting_total_fake{model_name="m"} 99
# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} %d
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} %g
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.001"} 0
vllm:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 3
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.3
vllm:time_to_first_token_seconds_count{model_name="m"} 3
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.7e+09
vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters="c"} 1.8e+09
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",num_gpu_blocks="96"} 1
`, running, waiting, kv)
}

func TestParseReadsTheSchedulingFamilies(t *testing.T) {
	now := time.Now()
	m, _, err := Parse([]byte(page(3, 4, 0.25)), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if m.WaitingQueueSize != 3 || m.RunningRequestsSize != 4 || m.KVCacheUsagePercent != 0.25 || !m.UpdateTime.Equal(now) {
		t.Errorf("metrics %+v", m)
	}
	if strings.Join(m.ActiveModels, ",") != "a,b" || strings.Join(m.WaitingModels, ",") != "c" || m.MaxActiveModels != 2 {
		t.Errorf("LoRA: newest series not chosen: %+v", m)
	}
	if m.CacheBlockSize != 16 || m.CacheNumBlocks != 96 {
		t.Errorf("cache config %+v", m)
	}
}

func TestParseFallsBackToTheOldKVName(t *testing.T) {
	text := "vllm:num_requests_waiting 1\nvllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.5\n"
	m, _, err := Parse([]byte(text), nil, time.Now())
	if err != nil || m.KVCacheUsagePercent != 0.5 {
		t.Errorf("metrics %+v, err %v", m, err)
	}
}

func TestParseErrors(t *testing.T) {
	for name, text := range map[string]string{
		"missing waiting": "vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0\n",
		"missing kv":      "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\n",
		"malformed":       "vllm:num_requests_waiting{ 1\n",
	} {
		if _, _, err := Parse([]byte(text), nil, time.Now()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestSlowEndpointDoesNotDelayOthers runs one healthy and one hung model server: the healthy
// one keeps getting fresh metrics every interval while the hung one's go stale.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	var waiting atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, page(int(waiting.Load()), 0, 0.1))
	}))
	defer fast.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	store := datastore.NewStore()
	store.Replace([]datastore.Spec{{Address: strings.TrimPrefix(fast.URL, "http://")}, {Address: strings.TrimPrefix(slow.URL, "http://")}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		New(Options{Interval: 10 * time.Millisecond, Timeout: 5 * time.Second}).Run(ctx, store)
		close(done)
	}()
	defer func() { cancel(); <-done }()

	var fastEp, slowEp *datastore.Endpoint
	for _, e := range store.Endpoints() {
		if strings.HasSuffix(fast.URL, e.Address) {
			fastEp = e
		} else {
			slowEp = e
		}
	}
	waiting.Store(7)
	deadline := time.Now().Add(5 * time.Second)
	for fastEp.Metrics().WaitingQueueSize != 7 {
		if time.Now().After(deadline) {
			t.Fatal("fast endpoint never scraped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Changes keep arriving within a few intervals although the slow scrape is still hanging.
	for _, want := range []int64{8, 9} {
		waiting.Store(want)
		changed := time.Now()
		for int64(fastEp.Metrics().WaitingQueueSize) != want {
			if time.Since(changed) > time.Second {
				t.Fatalf("fast endpoint's update to %d not seen within 1s", want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if !slowEp.Metrics().UpdateTime.IsZero() || slowEp.Fresh(time.Now(), time.Second) {
		t.Error("hung endpoint has metrics")
	}
}

// TestMembershipStartsAndStopsLoops checks that endpoints leaving the store stop being scraped.
func TestMembershipStartsAndStopsLoops(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, page(0, 0, 0))
	}))
	defer srv.Close()
	store := datastore.NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		New(Options{Interval: 5 * time.Millisecond}).Run(ctx, store)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	store.Replace([]datastore.Spec{{Address: strings.TrimPrefix(srv.URL, "http://")}})
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("added endpoint not scraped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.Replace(nil)
	time.Sleep(30 * time.Millisecond) // let an in-flight scrape finish
	before := hits.Load()
	time.Sleep(50 * time.Millisecond)
	if after := hits.Load(); after != before {
		t.Errorf("removed endpoint scraped %d more times", after-before)
	}
}
