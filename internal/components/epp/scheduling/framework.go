// Package scheduling is the endpoint picker's plugin framework: a profile of ordered filters,
// weighted scorers and one picker, built from an EndpointPickerConfig (llm-d-facts §2.9, §2.11).
package scheduling

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// Errors the ext_proc layer maps to upstream status codes (llm-d-facts §2.3).
var (
	// ErrNoEndpoints means there was nothing to schedule on at all: 503.
	ErrNoEndpoints = errors.New("no ready endpoints")
	// ErrNoCapacity means the filters removed every candidate: 429.
	ErrNoCapacity = errors.New("no endpoint passed the filters")
)

// TypedName identifies a plugin instance: its registered type and its name in the config.
type TypedName struct {
	Type string
	Name string
}

// Plugin is any configured instance.
type Plugin interface {
	TypedName() TypedName
}

// Request is what scheduling knows about one inference request.
type Request struct {
	ID string
	// Model is the model named by the client; TargetModel is the one actually served, after
	// any rewrite. Prefix hashes are rooted at TargetModel.
	Model       string
	TargetModel string
	Headers     map[string]string
	// Prompt is the byte string the prefix scorer hashes (llm-d-facts §2.10, v1.5 inputs).
	Prompt    []byte
	CacheSalt string
}

// PrefixSummary is what the prefix scorer learned about the picked endpoint, for metrics and
// the decision record.
type PrefixSummary struct {
	Valid         bool
	MatchedBlocks int
	TotalBlocks   int
	BlockSize     int
}

// CycleState carries plugin data from one extension point to a later one within one decision.
type CycleState struct {
	entries []cycleEntry
	Prefix  PrefixSummary
}

type cycleEntry struct {
	key string
	val any
}

// Write stores val under key, replacing an earlier value.
func (c *CycleState) Write(key string, val any) {
	for i := range c.entries {
		if c.entries[i].key == key {
			c.entries[i].val = val
			return
		}
	}
	c.entries = append(c.entries, cycleEntry{key, val})
}

// Read returns the value stored under key.
func (c *CycleState) Read(key string) (any, bool) {
	for _, e := range c.entries {
		if e.key == key {
			return e.val, true
		}
	}
	return nil, false
}

// Filter narrows the candidate list; returning an empty list fails the decision with 429.
type Filter interface {
	Plugin
	Filter(ctx context.Context, cs *CycleState, req *Request, eps []*datastore.Endpoint) []*datastore.Endpoint
}

// Scorer writes one score per endpoint into out; the framework clamps them to [0,1].
type Scorer interface {
	Plugin
	Score(ctx context.Context, cs *CycleState, req *Request, eps []*datastore.Endpoint, out []float64)
}

// Picker chooses the target endpoints from the scored candidates, primary first.
type Picker interface {
	Plugin
	Pick(cs *CycleState, eps []*datastore.Endpoint, totals []float64) []*datastore.Endpoint
}

// SaturationDetector measures how loaded the pool is for admission (llm-d-facts §2.8): 1 means
// exactly at capacity, more is overloaded. The config's saturationDetector names one.
type SaturationDetector interface {
	Plugin
	Saturation(ctx context.Context, eps []*datastore.Endpoint) float64
}

// PreRequest plugins run after a successful pick, before the request is forwarded; the prefix
// scorer uses it to learn where the prompt's blocks now live.
type PreRequest interface {
	PreRequest(ctx context.Context, cs *CycleState, req *Request, res *Result)
}

// WeightedScorer is a scorer with its profile weight. Weights are not normalised (§7 gotcha 7).
type WeightedScorer struct {
	Scorer
	Weight float64
}

// Profile is one ordered filters → scorers → picker pipeline.
type Profile struct {
	Name    string
	Filters []Filter
	Scorers []WeightedScorer
	Picker  Picker
}

// Observer receives a duration in seconds; prometheus.Observer satisfies it.
type Observer interface {
	Observe(float64)
}

// ObserverFor returns the observer for a plugin at an extension point, or nil for none.
type ObserverFor func(extensionPoint string, tn TypedName) Observer

// ScorerScores is one scorer's raw scores, aligned with Result.Candidates.
type ScorerScores struct {
	Name   string
	Type   string
	Weight float64
	Values []float64
}

// Result is a successful decision.
type Result struct {
	// Targets are the picked endpoints, primary first.
	Targets    []*datastore.Endpoint
	Candidates []*datastore.Endpoint
	Scores     []ScorerScores
	Totals     []float64
	State      CycleState
}

// Scheduler runs one profile.
type Scheduler struct {
	profile    Profile
	preRequest []PreRequest
	plugins    []Plugin
	// Observers resolved once at construction so the hot path does no label lookups.
	filterObs []Observer
	scorerObs []Observer
	pickerObs Observer
	detector  SaturationDetector
}

// NewScheduler builds a scheduler for a profile. observe may be nil.
func NewScheduler(p Profile, extra []Plugin, observe ObserverFor) (*Scheduler, error) {
	if p.Picker == nil {
		return nil, fmt.Errorf("scheduling profile %q has no picker", p.Name)
	}
	s := &Scheduler{profile: p}
	seen := map[Plugin]bool{}
	add := func(pl Plugin) {
		if seen[pl] {
			return
		}
		seen[pl] = true
		s.plugins = append(s.plugins, pl)
		if pr, ok := pl.(PreRequest); ok {
			s.preRequest = append(s.preRequest, pr)
		}
	}
	for _, f := range p.Filters {
		add(f)
		s.filterObs = append(s.filterObs, resolve(observe, "Filter", f))
	}
	for _, sc := range p.Scorers {
		add(sc.Scorer)
		s.scorerObs = append(s.scorerObs, resolve(observe, "Scorer", sc.Scorer))
	}
	add(p.Picker)
	s.pickerObs = resolve(observe, "Picker", p.Picker)
	for _, pl := range extra {
		add(pl)
	}
	return s, nil
}

func resolve(observe ObserverFor, point string, p Plugin) Observer {
	if observe == nil {
		return nil
	}
	return observe(point, p.TypedName())
}

// Profile returns the profile the scheduler runs.
func (s *Scheduler) Profile() Profile { return s.profile }

// SaturationDetector returns the detector the config's saturationDetector names, or nil when the
// config names none (the caller then chooses a default).
func (s *Scheduler) SaturationDetector() SaturationDetector { return s.detector }

// Plugins returns every plugin instance in use.
func (s *Scheduler) Plugins() []Plugin { return s.plugins }

// Schedule picks targets for req among candidates. The candidate slice is not modified.
func (s *Scheduler) Schedule(ctx context.Context, req *Request, candidates []*datastore.Endpoint) (*Result, error) {
	if len(candidates) == 0 {
		return nil, ErrNoEndpoints
	}
	res := &Result{}
	eps := candidates
	for i, f := range s.profile.Filters {
		start := time.Now()
		eps = f.Filter(ctx, &res.State, req, eps)
		observe(s.filterObs[i], start)
		if len(eps) == 0 {
			return nil, fmt.Errorf("filter %q: %w", f.TypedName().Name, ErrNoCapacity)
		}
	}
	n := len(eps)
	// One backing array for all score vectors and the totals: fewer allocations per decision.
	backing := make([]float64, n*(len(s.profile.Scorers)+1))
	res.Totals = backing[:n:n]
	res.Scores = make([]ScorerScores, len(s.profile.Scorers))
	for i, ws := range s.profile.Scorers {
		out := backing[(i+1)*n : (i+2)*n : (i+2)*n]
		start := time.Now()
		ws.Score(ctx, &res.State, req, eps, out)
		observe(s.scorerObs[i], start)
		for j, v := range out {
			switch {
			case v < 0 || v != v:
				v = 0
			case v > 1:
				v = 1
			}
			out[j] = v
			res.Totals[j] += ws.Weight * v
		}
		tn := ws.TypedName()
		res.Scores[i] = ScorerScores{Name: tn.Name, Type: tn.Type, Weight: ws.Weight, Values: out}
	}
	start := time.Now()
	res.Targets = s.profile.Picker.Pick(&res.State, eps, res.Totals)
	observe(s.pickerObs, start)
	if len(res.Targets) == 0 {
		return nil, fmt.Errorf("picker %q returned nothing: %w", s.profile.Picker.TypedName().Name, ErrNoCapacity)
	}
	res.Candidates = eps
	for _, pr := range s.preRequest {
		pr.PreRequest(ctx, &res.State, req, res)
	}
	return res, nil
}

func observe(o Observer, start time.Time) {
	if o != nil {
		o.Observe(time.Since(start).Seconds())
	}
}
