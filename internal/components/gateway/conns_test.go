package gateway

import (
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"
)

// The authz and BBR connections are taken once, when the data plane starts, so their last use
// never moves: sweeping idle picker connections must leave them alone, or every request after
// the first sweep past idleConnTimeout fails with "the client connection is closing".
func TestSweepKeepsPinnedFilterConnections(t *testing.T) {
	var c conns
	defer c.closeAll()
	authzCC, err := c.pin("127.0.0.1:9001")
	if err != nil {
		t.Fatal(err)
	}
	pickerCC, err := c.get("127.0.0.1:9002")
	if err != nil {
		t.Fatal(err)
	}
	// Both were last used long ago, and no sweep ran for a while.
	long := time.Now().Add(-2 * idleConnTimeout).UnixNano()
	c.mu.Lock()
	for _, e := range c.m {
		e.lastUsed.Store(long)
	}
	c.lastSweep = time.Time{}
	c.mu.Unlock()

	// Dialling a new picker address sweeps.
	if _, err := c.get("127.0.0.1:9012"); err != nil {
		t.Fatal(err)
	}
	if st := pickerCC.GetState(); st != connectivity.Shutdown {
		t.Errorf("idle picker connection not closed: %v", st)
	}
	if st := authzCC.GetState(); st == connectivity.Shutdown {
		t.Fatal("the pinned authz connection was closed by the sweep")
	}
	c.mu.Lock()
	_, kept := c.m["127.0.0.1:9001"]
	c.mu.Unlock()
	if !kept {
		t.Fatal("the pinned authz connection left the table")
	}
}
