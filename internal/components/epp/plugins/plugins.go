// Package plugins is the registry of every plugin type the endpoint picker knows, keyed by the
// upstream type names that EndpointPickerConfig files use.
package plugins

import (
	"encoding/json"

	"github.com/inference-sandbox/sandbox/internal/components/epp/filter"
	"github.com/inference-sandbox/sandbox/internal/components/epp/picker"
	"github.com/inference-sandbox/sandbox/internal/components/epp/prefix"
	"github.com/inference-sandbox/sandbox/internal/components/epp/saturation"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scorer"
)

// inert is a plugin type upstream configs name for machinery this picker builds in (profile
// handling, metric collection, parsing). Accepting them lets an upstream config
// file load unchanged; they take part in no decision.
type inert struct{ tn scheduling.TypedName }

func (p *inert) TypedName() scheduling.TypedName { return p.tn }

func inertFactory(typ string) scheduling.Factory {
	return func(name string, _ json.RawMessage, _ scheduling.Handle) (scheduling.Plugin, error) {
		return &inert{tn: scheduling.TypedName{Type: typ, Name: name}}, nil
	}
}

// Registry returns a fresh registry with every built-in type.
func Registry() scheduling.Registry {
	r := scheduling.Registry{
		scorer.QueueType:           scorer.NewQueue,
		scorer.KVCacheType:         scorer.NewKVCache,
		scorer.RunningRequestsType: scorer.NewRunningRequests,
		scorer.LoadAwareType:       scorer.NewLoadAware,
		scorer.ActiveRequestType:   scorer.NewActiveRequest,
		scorer.LoRAAffinityType:    scorer.NewLoRAAffinity,
		prefix.Type:                prefix.New,
		picker.MaxScoreType:        picker.NewMaxScore,
		picker.RandomType:          picker.NewRandom,
		picker.WeightedRandomType:  picker.NewWeightedRandom,
		filter.DecodeType:          filter.NewDecode,
		filter.PrefillType:         filter.NewPrefill,
		filter.LabelSelectorType:   filter.NewLabelSelector,
		filter.HeaderTestingType:   filter.NewHeaderTesting,
		saturation.Type:            saturation.New,
	}
	for _, t := range []string{
		"single-profile-handler", "approx-prefix-cache-producer", "metrics-data-source",
		"core-metrics-extractor", "openai-parser",
	} {
		r[t] = inertFactory(t)
	}
	return r
}
