// Package progress prints the step lines users watch while something slow runs:
// "• Building node image ..." followed by "✓ Building node image (1m2s)" or "✗ ...".
// Every slow command reports through one Status so tests can capture it.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Status writes step lines to one writer. The zero value discards everything.
type Status struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// New returns a Status writing to w (usually stderr, so stdout stays machine-readable).
func New(w io.Writer) *Status { return &Status{w: w, now: time.Now} }

// Discard is a Status that prints nothing.
func Discard() *Status { return &Status{} }

// Step is one running step; End must be called exactly once.
type Step struct {
	s     *Status
	name  string
	start time.Time
}

// Start prints the step's first line and returns it.
func (s *Status) Start(format string, args ...any) *Step {
	name := fmt.Sprintf(format, args...)
	s.printf(" • %s ...\n", name)
	now := time.Now
	if s != nil && s.now != nil {
		now = s.now
	}
	return &Step{s: s, name: name, start: now()}
}

// Infof prints an indented detail line under the current step.
func (s *Status) Infof(format string, args ...any) {
	s.printf("   %s\n", fmt.Sprintf(format, args...))
}

// Warnf prints a warning line a user should read but that does not stop the work.
func (s *Status) Warnf(format string, args ...any) {
	s.printf(" ! %s\n", fmt.Sprintf(format, args...))
}

// End closes the step: ✓ with its duration, or ✗ when err is non-nil. It returns err so
// callers can write `return step.End(err)`.
func (st *Step) End(err error) error {
	d := time.Since(st.start).Round(100 * time.Millisecond)
	if err != nil {
		st.s.printf(" ✗ %s (%s)\n", st.name, d)
		return err
	}
	st.s.printf(" ✓ %s (%s)\n", st.name, d)
	return nil
}

// Skip closes the step as already done.
func (st *Step) Skip(reason string) {
	st.s.printf(" ✓ %s (%s)\n", st.name, reason)
}

func (s *Status) printf(format string, args ...any) {
	if s == nil || s.w == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format, args...)
}

// Writer returns where detailed output (build logs) should go, or io.Discard.
func (s *Status) Writer() io.Writer {
	if s == nil || s.w == nil {
		return io.Discard
	}
	return s.w
}
