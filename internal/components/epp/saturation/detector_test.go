package saturation

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// ep builds an endpoint whose metrics are age old at now.
func ep(addr string, waiting int, kv float64, age time.Duration) *datastore.Endpoint {
	e := datastore.NewEndpoint(datastore.Spec{Address: addr})
	e.SetMetrics(&datastore.Metrics{WaitingQueueSize: waiting, KVCacheUsagePercent: kv, UpdateTime: now.Add(-age)})
	return e
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestDefaultsAreUpstreams(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: 200 * time.Millisecond}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	c, err = ParseConfig([]byte(`{"queueDepthThreshold": 8, "kvCacheUtilThreshold": 0.9, "metricsStalenessThreshold": "1s", "headroom": 0.25}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Config{8, 0.9, time.Second, 0.25}); c != want {
		t.Errorf("parsed %+v, want %+v", c, want)
	}
}

func TestScoreAndPoolSaturation(t *testing.T) {
	d, err := NewDetector("d", Config{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	never := datastore.NewEndpoint(datastore.Spec{Address: "10.0.0.9:1"}) // never scraped
	for _, tc := range []struct {
		name string
		e    *datastore.Endpoint
		want float64
	}{
		{"idle", ep("a:1", 0, 0, 0), 0},
		{"queue dominates", ep("a:1", 2, 0.2, 0), 0.4},
		{"kv dominates", ep("a:1", 1, 0.6, 0), 0.75},
		{"queue exactly at threshold", ep("a:1", 5, 0, 0), 1},
		{"over capacity exceeds 1", ep("a:1", 15, 0.1, 0), 3},
		{"fresh at the staleness limit", ep("a:1", 1, 0, 200*time.Millisecond), 0.2},
		{"stale counts as full", ep("a:1", 0, 0, 201*time.Millisecond), 1},
		{"never scraped counts as full", never, 1},
	} {
		if got := d.Score(tc.e, now); !near(got, tc.want) {
			t.Errorf("%s: score %v, want %v", tc.name, got, tc.want)
		}
	}
	// Pool saturation is the mean over candidates; a stale endpoint contributes 1.
	pool := []*datastore.Endpoint{ep("a:1", 1, 0.1, 0), ep("b:1", 15, 0, 0), ep("c:1", 0, 0, time.Second)}
	if got, want := d.SaturationAt(now, pool), (0.2+3+1)/3.0; !near(got, want) {
		t.Errorf("pool saturation %v, want %v", got, want)
	}
	if got := d.SaturationAt(now, nil); got != 1 {
		t.Errorf("empty pool saturation %v, want 1", got)
	}
	// Saturation (the interface method) reads the detector's clock.
	d.now = func() time.Time { return now }
	if got := d.Saturation(context.Background(), pool[:1]); !near(got, 0.2) {
		t.Errorf("Saturation %v, want 0.2", got)
	}
}

func addrs(eps []*datastore.Endpoint) string {
	var s []string
	for _, e := range eps {
		s = append(s, e.Address)
	}
	return strings.Join(s, ",")
}

func TestFilter(t *testing.T) {
	base := Config{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: 200 * time.Millisecond}
	strict, _ := NewDetector("strict", base)
	withHeadroom := base
	withHeadroom.Headroom = 0.2 // limits: queue 6, kv 0.96
	loose, _ := NewDetector("loose", withHeadroom)

	idle := ep("idle:1", 0, 0.1, 0)
	deep := ep("deep:1", 5, 0.1, 0)   // at the queue threshold
	burst := ep("burst:1", 5, 0.9, 0) // inside the 20 % headroom on both
	over := ep("over:1", 6, 0.1, 0)   // at the relaxed queue limit
	full := ep("full:1", 0, 0.97, 0)  // above the relaxed kv limit
	stale := ep("stale:1", 0, 0, time.Second)
	all := []*datastore.Endpoint{idle, deep, burst, over, full, stale}

	if got := addrs(strict.FilterAt(now, all)); got != "idle:1" {
		t.Errorf("strict filter kept %s, want idle:1", got)
	}
	if got := addrs(loose.FilterAt(now, all)); got != "idle:1,deep:1,burst:1" {
		t.Errorf("headroom filter kept %s, want idle:1,deep:1,burst:1", got)
	}
	// Everything above the limits (or stale): the original list comes back, in order.
	if got, want := addrs(strict.FilterAt(now, all[1:])), addrs(all[1:]); got != want {
		t.Errorf("all-dropped fallback returned %s, want %s", got, want)
	}
	if got := strict.FilterAt(now, nil); len(got) != 0 {
		t.Errorf("empty input gave %d endpoints", len(got))
	}
	// Through the Filter interface, with the detector's clock.
	strict.now = func() time.Time { return now }
	var f scheduling.Filter = strict
	if got := addrs(f.Filter(context.Background(), &scheduling.CycleState{}, &scheduling.Request{}, []*datastore.Endpoint{deep, idle})); got != "idle:1" {
		t.Errorf("Filter kept %s", got)
	}
}

func TestParameterErrors(t *testing.T) {
	for _, tc := range []struct{ params, want string }{
		{`{"queueDepthThreshold": 0}`, "queueDepthThreshold must be greater than 0, got 0"},
		{`{"queueDepthThreshold": -3}`, "queueDepthThreshold must be greater than 0, got -3"},
		{`{"kvCacheUtilThreshold": 0}`, "kvCacheUtilThreshold must be in (0, 1], got 0"},
		{`{"kvCacheUtilThreshold": 1.5}`, "kvCacheUtilThreshold must be in (0, 1], got 1.5"},
		{`{"kvCacheUtilThreshold": -0.1}`, "kvCacheUtilThreshold must be in (0, 1]"},
		{`{"headroom": -0.5}`, "headroom must not be negative, got -0.5"},
		{`{"metricsStalenessThreshold": "0s"}`, "metricsStalenessThreshold must be greater than 0"},
		{`{"metricsStalenessThreshold": "-1s"}`, "metricsStalenessThreshold must be greater than 0"},
		{`{"metricsStalenessThreshold": "soon"}`, "metricsStalenessThreshold"},
		{`{"metricsStalenessThreshold": 200}`, "duration string"},
		{`{"queueDepthThreshold": "5"}`, "parameters"},
		{`{"queueDepth": 5}`, `unknown field "queueDepth"`},
	} {
		_, err := New("d", []byte(tc.params), scheduling.Handle{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.params, err, tc.want)
		}
	}
	// Two bad fields are both reported.
	_, err := New("d", []byte(`{"queueDepthThreshold": 0, "headroom": -1}`), scheduling.Handle{})
	if err == nil || !strings.Contains(err.Error(), "queueDepthThreshold") || !strings.Contains(err.Error(), "headroom") {
		t.Errorf("two bad fields: %v", err)
	}
	if _, err := NewDetector("d", Config{}); err == nil {
		t.Error("NewDetector accepted a zero Config")
	}
}
