package prefix

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Type is the upstream type name of the scorer.
const Type = "prefix-cache-scorer"

// Params are upstream's prefix-cache-scorer parameters (GAIE v1.5 names; hashBlockSize and
// blockSize from older releases are read as character counts).
type Params struct {
	AutoTune               *bool `json:"autoTune,omitempty"`
	BlockSizeTokens        int   `json:"blockSizeTokens,omitempty"`
	BlockSize              int   `json:"blockSize,omitempty"`
	HashBlockSize          int   `json:"hashBlockSize,omitempty"`
	MaxPrefixBlocksToMatch int   `json:"maxPrefixBlocksToMatch,omitempty"`
	MaxPrefixTokensToMatch int   `json:"maxPrefixTokensToMatch,omitempty"`
	LRUCapacityPerServer   int   `json:"lruCapacityPerServer,omitempty"`
}

// Scorer scores each candidate by the fraction of the prompt's leading blocks it is believed
// to cache, and learns from every decision it takes part in.
type Scorer struct {
	tn         scheduling.TypedName
	autoTune   bool
	blockChars int
	maxBlocks  int
	capacity   int
	index      *Index
}

// state passes the request's hashes from Score to PreRequest.
type state struct {
	hashes     []uint64
	eps        []*datastore.Endpoint
	matched    []int
	blockChars int
}

// New builds the scorer; it subscribes to the store so that endpoints leaving the pool are
// dropped from the index at once.
func New(name string, raw json.RawMessage, h scheduling.Handle) (scheduling.Plugin, error) {
	var p Params
	if err := scheduling.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s := &Scorer{tn: scheduling.TypedName{Type: Type, Name: name}, autoTune: true, index: NewIndex(),
		blockChars: 16 * CharsPerToken, maxBlocks: 256, capacity: 31250}
	if p.AutoTune != nil {
		s.autoTune = *p.AutoTune
	}
	switch {
	case p.BlockSize != 0 && p.BlockSizeTokens == 0:
		return nil, fmt.Errorf("parameters: blockSize (characters) is deprecated; set blockSizeTokens")
	case p.BlockSizeTokens < 0 || p.HashBlockSize < 0:
		return nil, fmt.Errorf("parameters: block size must be positive")
	case p.BlockSizeTokens > 0:
		s.blockChars = p.BlockSizeTokens * CharsPerToken
	case p.HashBlockSize > 0:
		s.blockChars = p.HashBlockSize
	}
	switch {
	case p.MaxPrefixBlocksToMatch < 0 || p.MaxPrefixTokensToMatch < 0:
		return nil, fmt.Errorf("parameters: maxPrefixBlocksToMatch and maxPrefixTokensToMatch must be positive")
	case p.MaxPrefixTokensToMatch > 0:
		s.maxBlocks = max(1, p.MaxPrefixTokensToMatch*CharsPerToken/s.blockChars)
	case p.MaxPrefixBlocksToMatch > 0:
		s.maxBlocks = p.MaxPrefixBlocksToMatch
	}
	if p.LRUCapacityPerServer < 0 {
		return nil, fmt.Errorf("parameters: lruCapacityPerServer must be positive")
	} else if p.LRUCapacityPerServer > 0 {
		s.capacity = p.LRUCapacityPerServer
	}
	if h.Store != nil {
		h.Store.Subscribe(func(_, removed []*datastore.Endpoint) {
			for _, e := range removed {
				s.index.Forget(e)
			}
		})
	}
	return s, nil
}

// TypedName implements scheduling.Plugin.
func (s *Scorer) TypedName() scheduling.TypedName { return s.tn }

// Index exposes the index for metrics and tests.
func (s *Scorer) Index() *Index { return s.index }

// blockCharsFor applies autoTune: the engine's own block size (vllm:cache_config_info) replaces
// the configured one, so that our blocks line up with the server's.
func (s *Scorer) blockCharsFor(eps []*datastore.Endpoint) int {
	if s.autoTune {
		for _, e := range eps {
			if bs := e.Metrics().CacheBlockSize; bs > 0 {
				return bs * CharsPerToken
			}
		}
	}
	return s.blockChars
}

// capacityFor applies autoTune to the LRU size: the engine's block count bounds what it can
// really hold.
func (s *Scorer) capacityFor(e *datastore.Endpoint) int {
	if s.autoTune {
		if n := e.Metrics().CacheNumBlocks; n > 0 {
			return n
		}
	}
	return s.capacity
}

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, cs *scheduling.CycleState, req *scheduling.Request, eps []*datastore.Endpoint, out []float64) {
	bc := s.blockCharsFor(eps)
	st := &state{eps: eps, blockChars: bc, matched: make([]int, len(eps))}
	st.hashes = Hashes(make([]uint64, 0, min(len(req.Prompt)/max(bc, 1), s.maxBlocks)),
		req.TargetModel, req.CacheSalt, req.Prompt, bc, s.maxBlocks)
	cs.Write(s.tn.Name, st)
	if len(st.hashes) == 0 {
		return
	}
	s.index.Match(st.hashes, eps, st.matched)
	total := float64(len(st.hashes))
	for i, m := range st.matched {
		out[i] = float64(m) / total
	}
}

// PreRequest implements scheduling.PreRequest: the primary target now caches the prompt.
func (s *Scorer) PreRequest(_ context.Context, cs *scheduling.CycleState, _ *scheduling.Request, res *scheduling.Result) {
	v, ok := cs.Read(s.tn.Name)
	if !ok {
		return
	}
	st := v.(*state)
	primary := res.Targets[0]
	matched := 0
	for i, e := range st.eps {
		if e == primary {
			matched = st.matched[i]
			break
		}
	}
	cs.Prefix = scheduling.PrefixSummary{Valid: true, MatchedBlocks: matched, TotalBlocks: len(st.hashes), BlockSize: st.blockChars}
	s.index.Add(primary, st.hashes, s.capacityFor(primary))
}
