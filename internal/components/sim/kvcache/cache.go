package kvcache

import (
	"container/list"
	"errors"
	"sync"
)

// ErrCapacity is returned when a request needs more blocks than the cache can ever free for
// it, because running requests pin the rest. The simulator maps it to upstream's HTTP 500.
var ErrCapacity = errors.New("the kv cache does not have sufficient capacity to store this request")

// Cache tracks which blocks are resident. Blocks referenced by running requests are "used"
// and never evicted; released blocks stay resident as "unused" in LRU order.
type Cache struct {
	mu       sync.Mutex
	capacity int
	used     map[uint64]int           // hash -> number of running requests holding it
	unused   map[uint64]*list.Element // hash -> element in lru
	lru      list.List                // unused hashes, least recently released first
	// onUsage receives Usage after every change, under the lock, so that a gauge fed from it
	// can never be left at a stale value by two racing updates.
	onUsage func(float64)
}

// New returns an empty cache holding at most capacity blocks; onUsage may be nil.
func New(capacity int, onUsage func(usage float64)) *Cache {
	if onUsage == nil {
		onUsage = func(float64) {}
	}
	return &Cache{capacity: capacity, used: map[uint64]int{}, unused: map[uint64]*list.Element{}, onUsage: onUsage}
}

func (c *Cache) usageLocked() float64 { return float64(len(c.used)) / float64(c.capacity) }

// Lease is the set of blocks one running request holds.
type Lease struct {
	blocks []uint64
}

// Start pins the request's blocks and returns how many of them were already resident
// (prefix-cache hits). Hits are counted for every resident block, as upstream does.
func (c *Cache) Start(blocks []uint64) (*Lease, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hits, revived := 0, 0
	for _, b := range blocks {
		if _, ok := c.used[b]; ok {
			hits++
		} else if _, ok := c.unused[b]; ok {
			hits++
			revived++
		}
	}
	fresh := len(blocks) - hits
	if len(c.used)+revived+fresh > c.capacity {
		return nil, 0, ErrCapacity
	}
	for _, b := range blocks {
		if n, ok := c.used[b]; ok {
			c.used[b] = n + 1
			continue
		}
		if e, ok := c.unused[b]; ok {
			c.lru.Remove(e)
			delete(c.unused, b)
			c.used[b] = 1
			continue
		}
		if len(c.used)+len(c.unused) >= c.capacity {
			if oldest := c.lru.Front(); oldest != nil {
				delete(c.unused, c.lru.Remove(oldest).(uint64))
			}
		}
		c.used[b] = 1
	}
	c.onUsage(c.usageLocked())
	return &Lease{blocks: blocks}, hits, nil
}

// Finish releases the lease's blocks; blocks no longer held become evictable.
func (c *Cache) Finish(l *Lease) {
	if l == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range l.blocks {
		n, ok := c.used[b]
		if !ok {
			continue
		}
		if n > 1 {
			c.used[b] = n - 1
			continue
		}
		delete(c.used, b)
		c.unused[b] = c.lru.PushBack(b)
	}
	l.blocks = nil
	c.onUsage(c.usageLocked())
}

// Usage is the fraction of capacity pinned by running requests (vllm:kv_cache_usage_perc).
func (c *Cache) Usage() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usageLocked()
}

// Stats reports the pinned and the resident-but-unpinned block counts.
func (c *Cache) Stats() (used, unused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.used), len(c.unused)
}
