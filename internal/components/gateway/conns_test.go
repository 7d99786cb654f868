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

// A picker connection taken by a request that is still running (a long completion streaming
// through the picker) is not idle, however long ago it was taken; once released it ages again.
func TestSweepKeepsConnectionsInUse(t *testing.T) {
	var c conns
	defer c.closeAll()
	cc, release, err := c.acquire("127.0.0.1:9002")
	if err != nil {
		t.Fatal(err)
	}
	age := func() {
		c.mu.Lock()
		for _, e := range c.m {
			e.lastUsed.Store(time.Now().Add(-2 * idleConnTimeout).UnixNano())
		}
		c.lastSweep = time.Time{}
		c.mu.Unlock()
	}
	age()
	if _, err := c.get("127.0.0.1:9012"); err != nil { // dialling a new address sweeps
		t.Fatal(err)
	}
	if st := cc.GetState(); st == connectivity.Shutdown {
		t.Fatal("a connection in use was swept")
	}
	release()
	age()
	if _, err := c.get("127.0.0.1:9022"); err != nil {
		t.Fatal(err)
	}
	if st := cc.GetState(); st != connectivity.Shutdown {
		t.Errorf("a released idle connection was kept: %v", st)
	}
}
