package prefix

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// Index remembers, per endpoint, a bounded LRU of block hashes that endpoint was sent, plus a
// reverse map from hash to endpoints for lookups. Memory is bounded by endpoints × capacity.
type Index struct {
	mu      sync.RWMutex
	servers map[*datastore.Endpoint]*server
	byHash  map[uint64][]*server
	// Dense small ids let a lookup count matches in a slice instead of a map.
	freeIDs []int
	nextID  int
	size    int
}

type server struct {
	ep       *datastore.Endpoint
	id       int
	capacity int
	lru      *simplelru.LRU[uint64, struct{}]
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{servers: map[*datastore.Endpoint]*server{}, byHash: map[uint64][]*server{}}
}

// Match returns, for each candidate, how many leading hashes it holds. The walk stops at the
// first hash no endpoint holds: later blocks cannot be cached without their parents.
func (x *Index) Match(hashes []uint64, eps []*datastore.Endpoint, matched []int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.servers) == 0 {
		return
	}
	var small [64]int
	var pos []int
	if x.nextID <= len(small) {
		pos = small[:x.nextID]
	} else {
		pos = make([]int, x.nextID)
	}
	for i := range pos {
		pos[i] = -1
	}
	for i, e := range eps {
		if s, ok := x.servers[e]; ok {
			pos[s.id] = i
		}
	}
	for _, h := range hashes {
		holders := x.byHash[h]
		if len(holders) == 0 {
			return
		}
		for _, s := range holders {
			if i := pos[s.id]; i >= 0 {
				matched[i]++
			}
		}
	}
}

// Add records that ep was sent a prompt with these hashes. capacity sizes the endpoint's LRU
// on first use and resizes it when the engine reports a different cache size.
func (x *Index) Add(ep *datastore.Endpoint, hashes []uint64, capacity int) {
	if len(hashes) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.servers[ep]
	if s == nil {
		s = x.newServer(ep, capacity)
	} else if capacity > 0 && capacity != s.capacity {
		// Resize evicts through the callback, which keeps size and byHash in step.
		s.lru.Resize(capacity)
		s.capacity = capacity
	}
	// Insert from the last block to the first, so that within one prompt the root blocks are
	// the most recently used and are evicted last: losing block 0 would void the whole chain.
	for i := len(hashes) - 1; i >= 0; i-- {
		h := hashes[i]
		if _, ok := s.lru.Get(h); ok {
			continue
		}
		s.lru.Add(h, struct{}{})
		x.byHash[h] = append(x.byHash[h], s)
		x.size++
	}
}

func (x *Index) newServer(ep *datastore.Endpoint, capacity int) *server {
	s := &server{ep: ep, capacity: max(capacity, 1)}
	if n := len(x.freeIDs); n > 0 {
		s.id, x.freeIDs = x.freeIDs[n-1], x.freeIDs[:n-1]
	} else {
		s.id = x.nextID
		x.nextID++
	}
	// NewLRU only fails for a non-positive size, which callers never pass.
	s.lru, _ = simplelru.NewLRU[uint64, struct{}](s.capacity, func(h uint64, _ struct{}) {
		x.unlink(h, s)
		x.size--
	})
	x.servers[ep] = s
	return s
}

// unlink drops s from the reverse entry of h. Called with x.mu held.
func (x *Index) unlink(h uint64, s *server) {
	holders := x.byHash[h]
	for i, o := range holders {
		if o == s {
			holders[i] = holders[len(holders)-1]
			holders = holders[:len(holders)-1]
			break
		}
	}
	if len(holders) == 0 {
		delete(x.byHash, h)
	} else {
		x.byHash[h] = holders
	}
}

// Forget removes everything known about ep; used when the endpoint leaves the pool.
func (x *Index) Forget(ep *datastore.Endpoint) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.servers[ep]
	if s == nil {
		return
	}
	for _, h := range s.lru.Keys() {
		x.unlink(h, s)
	}
	x.size -= s.lru.Len()
	delete(x.servers, ep)
	x.freeIDs = append(x.freeIDs, s.id)
}

// Size is the total number of (endpoint, block) entries, exported as
// inference_extension_prefix_indexer_size.
func (x *Index) Size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.size
}

// Len returns how many blocks the index holds for ep.
func (x *Index) Len(ep *datastore.Endpoint) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if s := x.servers[ep]; s != nil {
		return s.lru.Len()
	}
	return 0
}
