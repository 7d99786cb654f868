package scheduling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// Accepted apiVersions of EndpointPickerConfig: the GAIE one, and the llm-d one newer llm-d
// releases prefer (llm-d-facts §2.11).
var apiVersions = []string{"inference.networking.x-k8s.io/v1alpha1", "llm-d.ai/v1alpha1"}

// Config is EndpointPickerConfig in upstream's YAML shape. Sections this picker has no use for
// (data layer, flow control, parser) are accepted so that upstream configs load unchanged.
type Config struct {
	APIVersion         string          `json:"apiVersion"`
	Kind               string          `json:"kind"`
	FeatureGates       []string        `json:"featureGates,omitempty"`
	Plugins            []PluginSpec    `json:"plugins,omitempty"`
	SchedulingProfiles []ProfileSpec   `json:"schedulingProfiles,omitempty"`
	SaturationDetector *PluginRefSpec  `json:"saturationDetector,omitempty"`
	DataLayer          json.RawMessage `json:"dataLayer,omitempty"`
	Data               json.RawMessage `json:"data,omitempty"`
	FlowControl        json.RawMessage `json:"flowControl,omitempty"`
	Parser             *PluginRefSpec  `json:"parser,omitempty"`
}

// PluginSpec is one plugin instance.
type PluginSpec struct {
	Name       string          `json:"name,omitempty"`
	Type       string          `json:"type"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// ProfileSpec is one scheduling profile.
type ProfileSpec struct {
	Name    string          `json:"name"`
	Plugins []ProfilePlugin `json:"plugins"`
}

// ProfilePlugin references a plugin instance from a profile.
type ProfilePlugin struct {
	PluginRef string   `json:"pluginRef"`
	Weight    *float64 `json:"weight,omitempty"`
}

// PluginRefSpec is a bare reference.
type PluginRefSpec struct {
	PluginRef string `json:"pluginRef"`
}

// DefaultConfig is what upstream runs without a config file, and what the production stack's
// ConfigMap spells out: queue 2, kv-cache-utilization 2, prefix-cache 3 and the max-score picker
// (llm-d-facts §2.9; upstream-production-stack §2.4).
const DefaultConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`

// RandomBaselineConfig is the quality baseline of issue #5's comparisons: the production scorers
// still run (same cost), a random picker ignores them.
const RandomBaselineConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: prefix-cache-scorer, weight: 3}
  - {pluginRef: random-picker}
`

// Handle gives plugin factories access to the running picker.
type Handle struct {
	Store *datastore.Store
	// Staleness is the age after which an endpoint's scraped metrics are not trusted
	// (upstream --metrics-staleness-threshold, 2s).
	Staleness time.Duration
}

// Factory builds a plugin instance from its name and raw parameters.
type Factory func(name string, params json.RawMessage, h Handle) (Plugin, error)

// Registry maps plugin type names to factories.
type Registry map[string]Factory

// DecodeParams decodes plugin parameters strictly, so a misspelt parameter is an error rather
// than a silently ignored default.
func DecodeParams(raw json.RawMessage, into any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}

// Load parses an EndpointPickerConfig and builds its scheduler. Every error names the field,
// profile or plugin at fault.
func Load(data []byte, reg Registry, h Handle, observe ObserverFor) (*Scheduler, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("EndpointPickerConfig: %w", err)
	}
	if cfg.Kind != "EndpointPickerConfig" {
		return nil, fmt.Errorf("EndpointPickerConfig: kind must be EndpointPickerConfig, got %q", cfg.Kind)
	}
	if !slices.Contains(apiVersions, cfg.APIVersion) {
		return nil, fmt.Errorf("EndpointPickerConfig: apiVersion must be one of %s, got %q",
			strings.Join(apiVersions, ", "), cfg.APIVersion)
	}

	instances := map[string]Plugin{}
	var order []string
	for i, ps := range cfg.Plugins {
		if ps.Type == "" {
			return nil, fmt.Errorf("EndpointPickerConfig: plugins[%d]: type is required", i)
		}
		name := ps.Name
		if name == "" {
			name = ps.Type
		}
		if _, dup := instances[name]; dup {
			return nil, fmt.Errorf("EndpointPickerConfig: plugins[%d]: duplicate plugin name %q", i, name)
		}
		f, ok := reg[ps.Type]
		if !ok {
			return nil, fmt.Errorf("EndpointPickerConfig: plugins[%d] %q: unknown type %q (known: %s)",
				i, name, ps.Type, strings.Join(reg.types(), ", "))
		}
		p, err := f(name, ps.Parameters, h)
		if err != nil {
			return nil, fmt.Errorf("EndpointPickerConfig: plugin %q (type %s): %w", name, ps.Type, err)
		}
		instances[name] = p
		order = append(order, name)
	}

	profiles := cfg.SchedulingProfiles
	if len(profiles) == 0 {
		// Upstream default: one profile referencing every scheduling plugin instance.
		ps := ProfileSpec{Name: "default"}
		for _, name := range order {
			if isSchedulingPlugin(instances[name]) {
				ps.Plugins = append(ps.Plugins, ProfilePlugin{PluginRef: name})
			}
		}
		profiles = []ProfileSpec{ps}
	}
	if len(profiles) > 1 {
		return nil, fmt.Errorf("EndpointPickerConfig: schedulingProfiles: %d profiles given; only the "+
			"single-profile-handler is implemented, so exactly one profile is supported", len(profiles))
	}
	ps := profiles[0]
	if ps.Name == "" {
		return nil, fmt.Errorf("EndpointPickerConfig: schedulingProfiles[0]: name is required")
	}
	prof := Profile{Name: ps.Name}
	used := map[string]bool{}
	for i, ref := range ps.Plugins {
		where := fmt.Sprintf("EndpointPickerConfig: schedulingProfiles[%q].plugins[%d]", ps.Name, i)
		p, ok := instances[ref.PluginRef]
		if !ok {
			return nil, fmt.Errorf("%s: pluginRef %q names no plugin in plugins", where, ref.PluginRef)
		}
		if used[ref.PluginRef] {
			return nil, fmt.Errorf("%s: plugin %q referenced twice", where, ref.PluginRef)
		}
		used[ref.PluginRef] = true
		if ref.Weight != nil && *ref.Weight < 0 {
			return nil, fmt.Errorf("%s: weight of %q must not be negative", where, ref.PluginRef)
		}
		matched := false
		if f, ok := p.(Filter); ok {
			prof.Filters = append(prof.Filters, f)
			matched = true
		}
		if s, ok := p.(Scorer); ok {
			w := 1.0
			if ref.Weight != nil {
				w = *ref.Weight
			}
			prof.Scorers = append(prof.Scorers, WeightedScorer{Scorer: s, Weight: w})
			matched = true
		}
		if pk, ok := p.(Picker); ok {
			if prof.Picker != nil {
				return nil, fmt.Errorf("%s: second picker %q; a profile has exactly one picker", where, ref.PluginRef)
			}
			prof.Picker = pk
			matched = true
		}
		if !matched {
			return nil, fmt.Errorf("%s: plugin %q (type %s) is not a filter, scorer or picker",
				where, ref.PluginRef, p.TypedName().Type)
		}
	}
	if prof.Picker == nil {
		f, ok := reg["max-score-picker"]
		if !ok {
			return nil, fmt.Errorf("EndpointPickerConfig: profile %q has no picker and max-score-picker is not registered", ps.Name)
		}
		p, err := f("max-score-picker", nil, h)
		if err != nil {
			return nil, fmt.Errorf("EndpointPickerConfig: default picker: %w", err)
		}
		prof.Picker = p.(Picker)
	}
	var detector SaturationDetector
	if sd := cfg.SaturationDetector; sd != nil {
		if sd.PluginRef == "" {
			return nil, fmt.Errorf("EndpointPickerConfig: saturationDetector: pluginRef is required")
		}
		p, ok := instances[sd.PluginRef]
		if !ok {
			// Upstream configs may name the detector's type without declaring an instance:
			// build one with its defaults.
			f, known := reg[sd.PluginRef]
			if !known {
				return nil, fmt.Errorf("EndpointPickerConfig: saturationDetector: pluginRef %q names no plugin in plugins "+
					"and no plugin type", sd.PluginRef)
			}
			var err error
			if p, err = f(sd.PluginRef, nil, h); err != nil {
				return nil, fmt.Errorf("EndpointPickerConfig: saturationDetector %q: %w", sd.PluginRef, err)
			}
			instances[sd.PluginRef] = p
			order = append(order, sd.PluginRef)
		}
		if detector, ok = p.(SaturationDetector); !ok {
			return nil, fmt.Errorf("EndpointPickerConfig: saturationDetector: plugin %q (type %s) is not a saturation detector",
				sd.PluginRef, p.TypedName().Type)
		}
	}
	var extra []Plugin
	for _, name := range order {
		if !used[name] {
			extra = append(extra, instances[name])
		}
	}
	s, err := NewScheduler(prof, extra, observe)
	if err != nil {
		return nil, err
	}
	s.detector = detector
	return s, nil
}

func isSchedulingPlugin(p Plugin) bool {
	switch p.(type) {
	case Filter, Scorer, Picker:
		return true
	}
	return false
}

func (r Registry) types() []string {
	out := make([]string, 0, len(r))
	for t := range r {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
