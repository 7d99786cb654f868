package tui

import (
	"bytes"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

// screen runs the dashboard in a real Bubble Tea program at a fixed size, feeds it a snapshot
// and keys, waits until the terminal shows want, and returns the final screen. The golden
// files hold that screen (not the renderer's byte stream, whose frame boundaries vary).
func screen(t *testing.T, w, h int, snap observe.Snapshot, want string, keys ...tea.Msg) string {
	t.Helper()
	tm := teatest.NewTestModel(t, New(Options{Name: "dash"}), teatest.WithInitialTermSize(w, h))
	tm.Send(SnapshotMsg{snap})
	for _, k := range keys {
		tm.Send(k)
	}
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(want)) },
		teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	final := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
	return final.View() + "\n"
}

func TestGoldenModels(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "ministral-3b")))
}

func TestGoldenPods(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "[2 Pods]", keys("tab")...)))
}

func TestGoldenRouting(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "[3 Routing]", keys("3")...)))
}

func TestGoldenScaling(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "[4 Scaling]", keys("4")...)))
}

func TestGoldenPodDetails(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "Events", keys("2", "down", "down", "down", "enter")...)))
}

func TestGoldenHelp(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, fixture(), "this help", keys("?")...)))
}

func TestGoldenNarrowModels(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 60, 20, fixture(), "ministral-3b")))
}

func TestGoldenNarrowPods(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 50, 16, fixture(), "Pods", keys("2", "G")...)))
}

func TestGoldenStale(t *testing.T) {
	golden.RequireEqual(t, []byte(screen(t, 80, 24, staleFixture(), "STALE", keys("2")...)))
}

func TestGoldenResize(t *testing.T) {
	// Shrinking the terminal re-lays the table out; nothing is left over from the wide frame.
	golden.RequireEqual(t, []byte(screen(t, 120, 30, fixture(), "[3 Routing]",
		append(keys("3"), tea.WindowSizeMsg{Width: 72, Height: 12})...)))
}
