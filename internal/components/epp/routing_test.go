package epp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
)

// Routing behaviour against real simulators: the picker scrapes their real /metrics and the
// test, acting as the data plane, sends each request to the simulator the picker chose.

const simModel = "routing-model"

// startSims starts n simulators on loopback; mutate adjusts their shared config.
func startSims(t testing.TB, n int, mutate func(*sim.Config)) []string {
	t.Helper()
	var addrs []string
	for i := range n {
		cfg := sim.DefaultConfig()
		cfg.Model = simModel
		cfg.Seed = int64(i + 1)
		cfg.MaxModelLen = 16384
		if mutate != nil {
			mutate(&cfg)
		}
		s, err := sim.New(cfg, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		addrs = append(addrs, strings.TrimPrefix(ts.URL, "http://"))
	}
	return addrs
}

// waitScraped waits until the picker holds fresh metrics for every endpoint.
func waitScraped(t testing.TB, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh := 0
		for _, e := range srv.Store().Endpoints() {
			if e.Fresh(time.Now(), time.Second) {
				fresh++
			}
		}
		if fresh == len(srv.Store().Endpoints()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("simulator metrics were never scraped")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dataPlane is the smallest honest data plane: ext_proc request phase, forward the mutated body to
// the chosen simulator, then pass the response through the ext_proc response phase.
type dataPlane struct {
	t      *testing.T
	client extprocv3.ExternalProcessorClient
	http   *http.Client
}

func (g *dataPlane) complete(prompt string) string {
	g.t.Helper()
	body := []byte(fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":4}`, simModel, prompt))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, stream, err := sendRequest(ctx, g.client, "/v1/completions", body, 16384)
	if err != nil {
		g.t.Fatal(err)
	}
	if res.immediate != nil {
		g.t.Fatalf("picker rejected the request: %s", res.immediate.GetBody())
	}
	resp, err := g.http.Post("http://"+res.dest+"/v1/completions", "application/json", bytes.NewReader(res.body))
	if err != nil {
		g.t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("simulator %s answered %d: %s", res.dest, resp.StatusCode, out)
	}
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(":status", "200", "content-type", "application/json")}}})
	_ = stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: out, EndOfStream: true}}})
	for range 2 {
		if _, err := stream.Recv(); err != nil {
			g.t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	return res.dest
}

// served reads how many requests a simulator completed, from its own metrics.
func served(t testing.TB, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return int(n)
}

func newDataPlane(t *testing.T, srv *Server) *dataPlane {
	return &dataPlane{t: t, client: dial(t, srv), http: &http.Client{Timeout: 10 * time.Second}}
}

// family builds prompts sharing a ~2,000-character system prompt, as in the workload.
func family(name string, question int) string {
	return strings.Repeat("You are the "+name+" assistant. Answer precisely and cite sources. ", 30) +
		fmt.Sprintf("Question %d: what is %d squared?", question, question)
}

func TestSamePromptSticksToOnePod(t *testing.T) {
	addrs := startSims(t, 3, nil)
	srv := startPicker(t, "", staticSpecs(addrs...))
	waitScraped(t, srv)
	g := newDataPlane(t, srv)
	prompt := family("geography", 1)
	first := g.complete(prompt)
	for range 4 {
		if got := g.complete(prompt); got != first {
			t.Fatalf("same prompt went to %s after %s", got, first)
		}
	}
	for _, a := range addrs {
		want := 0
		if a == first {
			want = 5
		}
		if n := served(t, a); n != want {
			t.Errorf("simulator %s served %d requests, want %d", a, n, want)
		}
	}
}

func TestTwoPromptFamiliesAreEachSticky(t *testing.T) {
	addrs := startSims(t, 3, nil)
	srv := startPicker(t, "", staticSpecs(addrs...))
	waitScraped(t, srv)
	g := newDataPlane(t, srv)
	home := map[string]string{}
	for q := range 4 {
		for _, fam := range []string{"chemistry", "poetry"} {
			dest := g.complete(family(fam, q))
			if h, ok := home[fam]; ok && h != dest {
				t.Fatalf("family %s moved from %s to %s on question %d", fam, h, dest, q)
			}
			home[fam] = dest
		}
	}
}

func TestRandomPromptsSpreadAcrossPods(t *testing.T) {
	addrs := startSims(t, 2, nil)
	srv := startPicker(t, "", staticSpecs(addrs...))
	waitScraped(t, srv)
	g := newDataPlane(t, srv)
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa")
	const n = 60
	counts := map[string]int{}
	for range n {
		var b strings.Builder
		for range 120 {
			b.WriteString(words[rand.IntN(len(words))])
			b.WriteByte(' ')
		}
		counts[g.complete(b.String())]++
	}
	for a, c := range counts {
		if c > n*8/10 {
			t.Errorf("pod %s received %d of %d unrelated prompts (> 80%%): %v", a, c, n, counts)
		}
	}
	// The simulators confirm the split the picker reported.
	for _, a := range addrs {
		if got := served(t, a); got != counts[a] {
			t.Errorf("simulator %s served %d, picker routed %d", a, got, counts[a])
		}
	}
}

// TestSaturatedPodStopsReceivingRequests fills one simulator's queue behind the picker's back
// (max-num-seqs 1, slow first token) and checks that, once the picker's scrape sees the queue,
// new requests go to the other pod.
func TestSaturatedPodStopsReceivingRequests(t *testing.T) {
	addrs := startSims(t, 2, func(c *sim.Config) {
		c.MaxNumSeqs = 1
		c.TimeToFirstToken = sim.Duration(20 * time.Second)
	})
	srv := startPicker(t, "", staticSpecs(addrs...))
	waitScraped(t, srv)
	busy := addrs[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+busy+"/v1/completions",
				strings.NewReader(fmt.Sprintf(`{"model":%q,"prompt":"hold %d","max_tokens":1}`, simModel, i)))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	var busyEp *datastore.Endpoint
	for _, e := range srv.Store().Endpoints() {
		if e.Address == busy {
			busyEp = e
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for busyEp.Metrics().WaitingQueueSize < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("picker never saw the queue: %+v", busyEp.Metrics())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Only the routing decision matters here, so the requests are not forwarded: the other
	// simulator stays idle and the comparison stays clean.
	c := dial(t, srv)
	for i := range 20 {
		body := []byte(fmt.Sprintf(`{"model":%q,"prompt":"fresh question number %d about something else entirely, long enough to hash a block or two","max_tokens":1}`, simModel, i))
		res, stream, err := sendRequest(context.Background(), c, "/v1/completions", body, 4096)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		if res.dest == busy {
			t.Fatalf("request %d went to the saturated pod %s", i, busy)
		}
	}
}
