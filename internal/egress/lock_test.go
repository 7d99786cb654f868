package egress

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestSharedHoldersBlockExclusiveRemoval(t *testing.T) {
	LockPath = filepath.Join(t.TempDir(), "guard.lock")
	a, err := HoldShared()
	if err != nil {
		t.Fatal(err)
	}
	b, err := HoldShared()
	if err != nil {
		t.Fatal("two ups must be able to run at once:", err)
	}
	if _, err := TryExclusive(); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive lock while ups run: %v", err)
	}
	a.Release()
	if _, err := TryExclusive(); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive lock while one up still runs: %v", err)
	}
	b.Release()
	x, err := TryExclusive()
	if err != nil {
		t.Fatalf("exclusive lock with no up running: %v", err)
	}
	x.Release()
	x.Release() // idempotent
}
