package kube

import "testing"

func TestChangesCoalesceBursts(t *testing.T) {
	s := NewChanges()
	h := s.Handler()
	h.OnAdd(nil, false)
	h.OnUpdate(nil, nil)
	h.OnDelete(nil)
	s.Notify()
	select {
	case <-s.C():
	default:
		t.Fatal("no wake-up after changes")
	}
	select {
	case <-s.C():
		t.Fatal("a burst of four changes woke twice")
	default:
	}
}
