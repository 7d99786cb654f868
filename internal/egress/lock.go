package egress

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockPath serialises guard removal against sandboxes being created: `up` holds a shared
// lock from installing the guard until its nodes exist, and `down` removes the guard only if
// it can take the lock exclusively. Without it, a `down` of one sandbox could see "no kind
// cluster left" while another sandbox's nodes are being created, and unguard them.
var LockPath = filepath.Join(os.TempDir(), "sandbox-egress-guard.lock")

// Lock is a held guard lock.
type Lock struct{ f *os.File }

// HoldShared blocks until it holds the lock shared (many `up`s may run at once).
func HoldShared() (*Lock, error) {
	return lock(unix.LOCK_SH)
}

// ErrBusy means another process holds the lock.
var ErrBusy = errors.New("the egress guard is in use by a sandbox being created")

// TryExclusive takes the lock exclusively without waiting, or returns ErrBusy.
func TryExclusive() (*Lock, error) {
	l, err := lock(unix.LOCK_EX | unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, ErrBusy
	}
	return l, err
}

func lock(how int) (*Lock, error) {
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", LockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release drops the lock; safe on nil.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
