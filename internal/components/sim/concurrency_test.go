package sim

import (
	"bufio"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestManyConcurrentStreamsLeaveNoGoroutines holds 2,000 streams open at once (all admitted:
// max-num-seqs is larger), checks every one completes, and that the goroutine count returns
// to its starting level once the connections are closed.
func TestManyConcurrentStreamsLeaveNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 loopback connections")
	}
	const streams = 2000
	s, ts := newTestServer(t, func(c *Config) {
		c.MaxNumSeqs = streams
		c.TimeToFirstToken = Duration(time.Millisecond)
		c.InterTokenLatency = Duration(400 * time.Millisecond)
	})
	transport := &http.Transport{MaxIdleConnsPerHost: streams}
	client := &http.Client{Transport: transport}
	baseline := runtime.NumGoroutine()

	body := `{"model":"test-model","messages":[{"role":"user","content":"hold on"}],"max_tokens":8,"ignore_eos":true,"stream":true}`
	var wg sync.WaitGroup
	var done, peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				if l := int64(s.sched.load()); l > peak.Load() {
					peak.Store(l)
				}
			}
		}
	}()
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() == "data: [DONE]" {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if done.Load() != streams {
		t.Fatalf("%d of %d streams completed", done.Load(), streams)
	}
	if peak.Load() < streams*9/10 && !raceEnabled {
		t.Errorf("peak concurrency %d, want about %d", peak.Load(), streams)
	}
	t.Logf("peak concurrent running requests: %d", peak.Load())
	transport.CloseIdleConnections()
	eventually(t, 10*time.Second, "goroutines back to baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+5
	})
	if s.sched.load() != 0 {
		t.Errorf("%d slots still held", s.sched.load())
	}
}
