// Package picker chooses the target endpoints from scored candidates (llm-d-facts §2.9).
package picker

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Type names as upstream registers them.
const (
	MaxScoreType       = "max-score-picker"
	RandomType         = "random-picker"
	WeightedRandomType = "weighted-random-picker"
)

// base is what every picker has: its name and maxNumOfEndpoints (default 1).
type base struct {
	tn scheduling.TypedName
	n  int
}

// TypedName implements scheduling.Plugin.
func (b base) TypedName() scheduling.TypedName { return b.tn }

// factory decodes the parameters all pickers share and builds the picker.
func factory(typ string, build func(base) scheduling.Picker) scheduling.Factory {
	return func(name string, raw json.RawMessage, _ scheduling.Handle) (scheduling.Plugin, error) {
		p := struct {
			MaxNumOfEndpoints int `json:"maxNumOfEndpoints"`
		}{MaxNumOfEndpoints: 1}
		if err := scheduling.DecodeParams(raw, &p); err != nil {
			return nil, err
		}
		if p.MaxNumOfEndpoints < 1 {
			return nil, fmt.Errorf("parameters: maxNumOfEndpoints must be at least 1, got %d", p.MaxNumOfEndpoints)
		}
		return build(base{tn: scheduling.TypedName{Type: typ, Name: name}, n: p.MaxNumOfEndpoints}), nil
	}
}

// Factories of the upstream picker types.
var (
	NewMaxScore       = factory(MaxScoreType, func(b base) scheduling.Picker { return &MaxScore{b} })
	NewRandom         = factory(RandomType, func(b base) scheduling.Picker { return &Random{b} })
	NewWeightedRandom = factory(WeightedRandomType, func(b base) scheduling.Picker { return &WeightedRandom{b} })
)

// MaxScore returns the highest-scoring endpoints; ties are broken uniformly at random so that
// equal endpoints share load (§7 gotcha 7).
type MaxScore struct{ base }

// Pick implements scheduling.Picker.
func (p *MaxScore) Pick(_ *scheduling.CycleState, eps []*datastore.Endpoint, totals []float64) []*datastore.Endpoint {
	if p.n == 1 {
		// Single pass with reservoir sampling over the ties: same distribution as
		// shuffle + stable sort, without the allocation.
		best, ties := -1, 0
		for i, s := range totals {
			switch {
			case best < 0 || s > totals[best]:
				best, ties = i, 1
			case s == totals[best]:
				ties++
				if rand.IntN(ties) == 0 {
					best = i
				}
			}
		}
		return []*datastore.Endpoint{eps[best]}
	}
	idx := shuffled(len(eps))
	sort.SliceStable(idx, func(a, b int) bool { return totals[idx[a]] > totals[idx[b]] })
	return take(eps, idx, p.n)
}

// Random picks uniformly, ignoring scores; it is the baseline the prefix-aware config is
// measured against.
type Random struct{ base }

// Pick implements scheduling.Picker.
func (p *Random) Pick(_ *scheduling.CycleState, eps []*datastore.Endpoint, _ []float64) []*datastore.Endpoint {
	if p.n == 1 {
		return []*datastore.Endpoint{eps[rand.IntN(len(eps))]}
	}
	return take(eps, shuffled(len(eps)), p.n)
}

// WeightedRandom samples without replacement with probability proportional to score, using
// keys u^(1/w) (A-Res); endpoints scoring 0 come last.
type WeightedRandom struct{ base }

// Pick implements scheduling.Picker.
func (p *WeightedRandom) Pick(_ *scheduling.CycleState, eps []*datastore.Endpoint, totals []float64) []*datastore.Endpoint {
	keys := make([]float64, len(eps))
	for i, w := range totals {
		if w <= 0 {
			keys[i] = -1 - rand.Float64() // random order among the zero-weight ones
			continue
		}
		keys[i] = math.Pow(rand.Float64(), 1/w)
	}
	idx := make([]int, len(eps))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case keys[a] > keys[b]:
			return -1
		case keys[a] < keys[b]:
			return 1
		}
		return 0
	})
	return take(eps, idx, p.n)
}

func shuffled(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	rand.Shuffle(n, func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
	return idx
}

func take(eps []*datastore.Endpoint, idx []int, n int) []*datastore.Endpoint {
	n = min(n, len(idx))
	out := make([]*datastore.Endpoint, n)
	for i := range out {
		out[i] = eps[idx[i]]
	}
	return out
}
