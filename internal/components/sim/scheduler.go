package sim

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// errQueueFull is returned when max-waiting-queue-length requests are already waiting.
var errQueueFull = errors.New("waiting queue full")

// scheduler admits at most max-num-seqs sub-requests at once and queues the rest FIFO
// (facts §1.9). Unlike upstream there are no worker goroutines: the request's own goroutine
// runs once admitted, and a finishing request hands its slot straight to the oldest waiter,
// which avoids two goroutine hand-offs per request on the zero-latency hot path.
type scheduler struct {
	mu         sync.Mutex
	running    int
	maxRunning int
	maxWaiting int
	waiting    list.List // of *waiter
	gauges     schedulerGauges
}

// schedulerGauges receives running/waiting changes; metrics implements it.
type schedulerGauges interface {
	addRunning(delta int)
	addWaiting(delta int)
}

type waiter struct {
	ready   chan struct{}
	elem    *list.Element
	granted bool
}

func newScheduler(maxRunning, maxWaiting int, g schedulerGauges) *scheduler {
	return &scheduler{maxRunning: maxRunning, maxWaiting: maxWaiting, gauges: g}
}

// acquire blocks until the caller may run and returns the time spent waiting. On error the
// caller holds no slot: the queue was full or ctx ended while waiting.
func (s *scheduler) acquire(ctx context.Context) (time.Duration, error) {
	s.mu.Lock()
	if s.running < s.maxRunning && s.waiting.Len() == 0 {
		s.running++
		s.mu.Unlock()
		s.gauges.addRunning(1)
		return 0, nil
	}
	if s.waiting.Len() >= s.maxWaiting {
		s.mu.Unlock()
		return 0, errQueueFull
	}
	w := &waiter{ready: make(chan struct{})}
	w.elem = s.waiting.PushBack(w)
	s.mu.Unlock()
	s.gauges.addWaiting(1)
	start := time.Now()
	select {
	case <-w.ready:
		return time.Since(start), nil
	case <-ctx.Done():
		s.mu.Lock()
		if w.granted {
			// The slot arrived together with the cancellation: pass it on.
			s.mu.Unlock()
			s.release()
			return 0, ctx.Err()
		}
		s.waiting.Remove(w.elem)
		s.mu.Unlock()
		s.gauges.addWaiting(-1)
		return 0, ctx.Err()
	}
}

// release frees the caller's slot, handing it to the oldest waiter if there is one.
func (s *scheduler) release() {
	s.mu.Lock()
	if front := s.waiting.Front(); front != nil {
		w := s.waiting.Remove(front).(*waiter)
		w.granted = true
		close(w.ready)
		s.mu.Unlock()
		s.gauges.addWaiting(-1)
		return
	}
	s.running--
	s.mu.Unlock()
	s.gauges.addRunning(-1)
}

// load returns the number of running sub-requests, the input of the latency load factor.
func (s *scheduler) load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}
