package sim

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type gaugeRecorder struct {
	mu               sync.Mutex
	running, waiting int
}

func (g *gaugeRecorder) addRunning(d int) { g.mu.Lock(); g.running += d; g.mu.Unlock() }
func (g *gaugeRecorder) addWaiting(d int) { g.mu.Lock(); g.waiting += d; g.mu.Unlock() }
func (g *gaugeRecorder) get() (int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.waiting
}

// TestSchedulerFIFOHandOff admits waiters strictly in arrival order, skips a waiter that
// gave up, and refuses work beyond the queue capacity.
func TestSchedulerFIFOHandOff(t *testing.T) {
	g := &gaugeRecorder{}
	s := newScheduler(1, 3, g)
	if _, err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	cancelled, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		ctx := context.Background()
		if i == 1 {
			ctx = cancelled
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.acquire(ctx); err != nil {
				return
			}
			order <- i
			s.release()
		}()
		// Arrival order is the point of the test: wait until this waiter is queued.
		eventually(t, time.Second, "waiter queued", func() bool { _, w := g.get(); return w == i+1 })
	}
	if _, err := s.acquire(context.Background()); !errors.Is(err, errQueueFull) {
		t.Fatalf("fourth waiter: %v, want errQueueFull", err)
	}
	cancel()
	eventually(t, time.Second, "cancelled waiter removed", func() bool { _, w := g.get(); return w == 2 })
	s.release()
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Fatalf("admission order %v, want [0 2]", got)
	}
	if r, w := g.get(); r != 0 || w != 0 || s.load() != 0 {
		t.Fatalf("after drain running=%d waiting=%d load=%d", r, w, s.load())
	}
}
