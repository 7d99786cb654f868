// Package datastore holds the endpoint picker's view of its pool: which endpoints exist, the
// latest metrics scraped from each, and the picker's own in-flight count per endpoint.
//
// The scheduler reads a copy-on-write snapshot without taking locks, because it runs on every
// request while membership changes only when pods come and go (llm-d-facts §2.6).
package datastore

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics is one scrape of a model server, reduced to what scheduling needs (llm-d-facts §2.7).
// A Metrics value is never mutated after it is published, so readers may keep the pointer.
type Metrics struct {
	WaitingQueueSize    int
	RunningRequestsSize int
	KVCacheUsagePercent float64
	// LoRA adapters from vllm:lora_requests_info.
	ActiveModels    []string
	WaitingModels   []string
	MaxActiveModels int
	// From vllm:cache_config_info; zero when the server does not report it.
	CacheBlockSize int
	CacheNumBlocks int
	UpdateTime     time.Time
}

// Spec identifies one endpoint as discovery sees it.
type Spec struct {
	// Name is the endpoint's name in metrics and decisions: `<pod>-rank-<i>` as in GAIE v1.5,
	// or the address for statically configured endpoints.
	Name      string
	PodName   string
	Namespace string
	// Address is ip:port as produced by net.JoinHostPort; it is the value the gateway receives.
	Address string
	Labels  map[string]string
}

// Endpoint is one routable model-server address. Its identity (name and address) never changes;
// labels, metrics and the in-flight count are updated atomically in place.
type Endpoint struct {
	Name      string
	PodName   string
	Namespace string
	Address   string
	Port      string

	labels   atomic.Pointer[map[string]string]
	metrics  atomic.Pointer[Metrics]
	inFlight atomic.Int64
}

var noMetrics = &Metrics{}

// NewEndpoint builds an endpoint from its spec; exported so that tests and benchmarks can
// hand-build endpoint states without a store.
func NewEndpoint(s Spec) *Endpoint {
	e := &Endpoint{Name: s.Name, PodName: s.PodName, Namespace: s.Namespace, Address: s.Address}
	if i := strings.LastIndexByte(s.Address, ':'); i >= 0 {
		e.Port = s.Address[i+1:]
	}
	if e.Name == "" {
		e.Name = s.Address
	}
	labels := s.Labels
	e.labels.Store(&labels)
	return e
}

// Labels returns the pod labels; callers must not modify the map.
func (e *Endpoint) Labels() map[string]string { return *e.labels.Load() }

// Metrics returns the latest scrape, or an empty Metrics with a zero UpdateTime if none arrived yet.
func (e *Endpoint) Metrics() *Metrics {
	if m := e.metrics.Load(); m != nil {
		return m
	}
	return noMetrics
}

// SetMetrics publishes a new scrape.
func (e *Endpoint) SetMetrics(m *Metrics) { e.metrics.Store(m) }

// Fresh reports whether the endpoint's metrics are younger than threshold at now.
func (e *Endpoint) Fresh(now time.Time, threshold time.Duration) bool {
	m := e.metrics.Load()
	return m != nil && now.Sub(m.UpdateTime) <= threshold
}

// InFlight is the number of requests this picker sent to the endpoint that have not finished;
// unlike scraped queue sizes it is current to the request, which is what the
// active-request scorer needs between two scrapes.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// AddInFlight adjusts the in-flight count.
func (e *Endpoint) AddInFlight(delta int64) { e.inFlight.Add(delta) }

// Listener is told about membership changes after they are applied.
type Listener func(added, removed []*Endpoint)

// Store is the set of endpoints of one pool.
type Store struct {
	mu        sync.Mutex
	byKey     map[string]*Endpoint
	listeners []Listener
	snapshot  atomic.Pointer[[]*Endpoint]
	synced    atomic.Bool
}

// NewStore returns an empty, unsynced store.
func NewStore() *Store {
	s := &Store{byKey: map[string]*Endpoint{}}
	empty := []*Endpoint{}
	s.snapshot.Store(&empty)
	return s
}

// Endpoints returns the current endpoints sorted by address. The slice is shared: do not modify it.
func (s *Store) Endpoints() []*Endpoint { return *s.snapshot.Load() }

// Synced reports whether discovery has delivered the pool's state at least once; the gRPC
// readiness check follows it (llm-d-facts §2.12).
func (s *Store) Synced() bool { return s.synced.Load() }

// Subscribe registers a listener and immediately tells it about the current endpoints, so a
// subscriber that arrives late (the scraper, the prefix index) starts from the same state.
func (s *Store) Subscribe(l Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
	if cur := *s.snapshot.Load(); len(cur) > 0 {
		l(cur, nil)
	}
}

// Replace makes the store hold exactly the given endpoints. Endpoints whose name and address are
// unchanged keep their metrics and in-flight count; a label change updates labels in place.
func (s *Store) Replace(specs []Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]Spec, len(specs))
	for _, sp := range specs {
		if sp.Name == "" {
			sp.Name = sp.Address
		}
		want[sp.Name+"|"+sp.Address] = sp
	}
	var added, removed []*Endpoint
	for key, e := range s.byKey {
		if _, ok := want[key]; !ok {
			removed = append(removed, e)
			delete(s.byKey, key)
		}
	}
	for key, sp := range want {
		if e, ok := s.byKey[key]; ok {
			if !labelsEqual(e.Labels(), sp.Labels) {
				l := sp.Labels
				e.labels.Store(&l)
			}
			continue
		}
		e := NewEndpoint(sp)
		s.byKey[key] = e
		added = append(added, e)
	}
	s.synced.Store(true)
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	next := make([]*Endpoint, 0, len(s.byKey))
	for _, e := range s.byKey {
		next = append(next, e)
	}
	slices.SortFunc(next, func(a, b *Endpoint) int {
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	s.snapshot.Store(&next)
	for _, l := range s.listeners {
		l(added, removed)
	}
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
