package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

const header = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"

func load(text string) (*scheduling.Scheduler, error) {
	return scheduling.Load([]byte(text), Registry(), scheduling.Handle{Store: datastore.NewStore()}, nil)
}

func TestDefaultConfigIsTheProductionStacksWeights(t *testing.T) {
	s, err := load(scheduling.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profile()
	got := map[string]float64{}
	for _, sc := range p.Scorers {
		got[sc.TypedName().Type] = sc.Weight
	}
	want := map[string]float64{"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("weights %v, want %v", got, want)
	}
	if p.Picker.TypedName().Type != "max-score-picker" {
		t.Errorf("default picker %s", p.Picker.TypedName().Type)
	}
}

func TestUpstreamStyleConfigLoads(t *testing.T) {
	s, err := load(header + `featureGates: [dataLayer]
plugins:
- name: my-prefix
  type: prefix-cache-scorer
  parameters: {blockSizeTokens: 16, maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250}
- type: queue-scorer
- type: decode-filter
- type: random-picker
  parameters: {maxNumOfEndpoints: 2}
- type: single-profile-handler
- type: metrics-data-source
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: my-prefix
    weight: 3
  - pluginRef: queue-scorer
  - pluginRef: random-picker
`)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profile()
	if len(p.Filters) != 1 || len(p.Scorers) != 2 || p.Picker.TypedName().Type != "random-picker" {
		t.Fatalf("profile %+v", p)
	}
	if p.Scorers[0].TypedName().Name != "my-prefix" || p.Scorers[0].Weight != 3 || p.Scorers[1].Weight != 1 {
		t.Errorf("scorers %+v; want my-prefix weight 3 and queue-scorer defaulted to 1", p.Scorers)
	}
}

func TestNoProfilesReferencesEveryPluginAndAddsAPicker(t *testing.T) {
	s, err := load(header + "plugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\n")
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Profile(); p.Name != "default" || len(p.Scorers) != 2 || p.Picker == nil {
		t.Errorf("profile %+v", p)
	}
}

func TestConfigErrorsNameTheCulprit(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"not yaml", "plugins: [", "EndpointPickerConfig"},
		{"wrong kind", "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: Foo\n", `got "Foo"`},
		{"wrong apiVersion", "apiVersion: v1\nkind: EndpointPickerConfig\n", `got "v1"`},
		{"unknown top-level field", header + "plugin: []\n", `unknown field "plugin"`},
		{"unknown type", header + "plugins:\n- type: magic-scorer\n", `unknown type "magic-scorer"`},
		{"missing type", header + "plugins:\n- name: x\n", "plugins[0]: type is required"},
		{"bad parameter", header + "plugins:\n- name: pfx\n  type: prefix-cache-scorer\n  parameters: {blockSizeToken: 16}\n",
			`plugin "pfx" (type prefix-cache-scorer): parameters: json: unknown field "blockSizeToken"`},
		{"duplicate name", header + "plugins:\n- type: queue-scorer\n- type: queue-scorer\n", `duplicate plugin name "queue-scorer"`},
		{"dangling ref", header + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: nope\n",
			`pluginRef "nope" names no plugin`},
		{"negative weight", header + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: queue-scorer\n    weight: -1\n",
			"must not be negative"},
		{"two pickers", header + "plugins:\n- type: max-score-picker\n- type: random-picker\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: max-score-picker\n  - pluginRef: random-picker\n",
			`second picker "random-picker"`},
		{"two profiles", header + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n  plugins: []\n- name: b\n  plugins: []\n",
			"exactly one profile"},
		{"non-scheduling plugin in profile", header + "plugins:\n- type: single-profile-handler\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: single-profile-handler\n",
			"is not a filter, scorer or picker"},
		{"bad picker parameter", header + "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoints: 0}\n",
			"maxNumOfEndpoints must be at least 1"},
	} {
		_, err := load(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestSchedulerWeightsAndFilters drives a whole profile: the label filter narrows the set, the
// weighted sum decides, and filtering everything away is ErrNoCapacity (429).
func TestSchedulerWeightsAndFilters(t *testing.T) {
	s, err := load(header + `plugins:
- type: by-label-selector
  parameters: {matchLabels: {pool: a}}
- type: queue-scorer
- type: kv-cache-utilization-scorer
schedulingProfiles:
- name: p
  plugins:
  - pluginRef: by-label-selector
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: kv-cache-utilization-scorer
    weight: 3
`)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(addr string, pool string, q int, kv float64) *datastore.Endpoint {
		e := datastore.NewEndpoint(datastore.Spec{Address: addr, Labels: map[string]string{"pool": pool}})
		e.SetMetrics(&datastore.Metrics{WaitingQueueSize: q, KVCacheUsagePercent: kv, UpdateTime: now})
		return e
	}
	// b has the shorter queue but a fuller cache; with kv weighted 3 it loses. c is filtered out.
	a, b, c := mk("10.0.0.1:1", "a", 4, 0.1), mk("10.0.0.2:1", "a", 0, 0.6), mk("10.0.0.3:1", "z", 0, 0)
	res, err := s.Schedule(context.Background(), &scheduling.Request{}, []*datastore.Endpoint{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if res.Targets[0] != a || len(res.Candidates) != 2 {
		t.Errorf("picked %s among %d candidates", res.Targets[0].Address, len(res.Candidates))
	}
	if res.Totals[0] != 0*1+0.9*3 || res.Totals[1] != 1*1+0.4*3 {
		t.Errorf("totals %v", res.Totals)
	}
	if _, err := s.Schedule(context.Background(), &scheduling.Request{}, []*datastore.Endpoint{c}); err == nil ||
		!strings.Contains(err.Error(), "no endpoint passed the filters") {
		t.Errorf("all filtered: %v", err)
	}
	if _, err := s.Schedule(context.Background(), &scheduling.Request{}, nil); err != scheduling.ErrNoEndpoints {
		t.Errorf("no candidates: %v", err)
	}
}

func TestUtilizationDetectorInConfig(t *testing.T) {
	// As a profile filter and as the saturation detector: one instance serves both.
	s, err := load(header + `plugins:
- type: utilization-detector
  parameters: {queueDepthThreshold: 3, headroom: 0.5}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: utilization-detector
  - pluginRef: queue-scorer
saturationDetector: {pluginRef: utilization-detector}
`)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profile()
	if len(p.Filters) != 1 || p.Filters[0].TypedName().Type != "utilization-detector" {
		t.Fatalf("filters %+v", p.Filters)
	}
	if sd := s.SaturationDetector(); sd == nil || sd != p.Filters[0].(scheduling.SaturationDetector) {
		t.Errorf("saturation detector %v is not the profile's filter instance", sd)
	}

	// Named by type only, without a plugins entry: built with defaults; no profile filter.
	s, err = load(header + "plugins:\n- type: queue-scorer\nsaturationDetector: {pluginRef: utilization-detector}\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.SaturationDetector() == nil || len(s.Profile().Filters) != 0 {
		t.Errorf("detector %v, filters %v", s.SaturationDetector(), s.Profile().Filters)
	}
	// Without saturationDetector the scheduler has none; the server supplies the default.
	if s, err = load(scheduling.DefaultConfig); err != nil || s.SaturationDetector() != nil {
		t.Errorf("default config: detector %v, err %v", s.SaturationDetector(), err)
	}

	for _, tc := range []struct{ name, text, want string }{
		{"bad threshold", header + "plugins:\n- type: utilization-detector\n  parameters: {queueDepthThreshold: 0}\n",
			`plugin "utilization-detector" (type utilization-detector): parameters: queueDepthThreshold must be greater than 0`},
		{"negative headroom", header + "plugins:\n- name: ud\n  type: utilization-detector\n  parameters: {headroom: -1}\n",
			`plugin "ud" (type utilization-detector): parameters: headroom must not be negative`},
		{"dangling detector", header + "plugins:\n- type: queue-scorer\nsaturationDetector: {pluginRef: nope}\n",
			`saturationDetector: pluginRef "nope" names no plugin`},
		{"not a detector", header + "plugins:\n- type: queue-scorer\nsaturationDetector: {pluginRef: queue-scorer}\n",
			`plugin "queue-scorer" (type queue-scorer) is not a saturation detector`},
	} {
		_, err := load(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}
