package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

func update(t *testing.T, m Model, msgs ...tea.Msg) Model {
	t.Helper()
	for _, msg := range msgs {
		next, _ := m.Update(msg)
		m = next.(Model)
	}
	return m
}

func keys(s ...string) []tea.Msg {
	var out []tea.Msg
	for _, k := range s {
		switch k {
		case "tab":
			out = append(out, tea.KeyMsg{Type: tea.KeyTab})
		case "shift+tab":
			out = append(out, tea.KeyMsg{Type: tea.KeyShiftTab})
		case "enter":
			out = append(out, tea.KeyMsg{Type: tea.KeyEnter})
		case "esc":
			out = append(out, tea.KeyMsg{Type: tea.KeyEsc})
		case "down":
			out = append(out, tea.KeyMsg{Type: tea.KeyDown})
		case "up":
			out = append(out, tea.KeyMsg{Type: tea.KeyUp})
		case "backspace":
			out = append(out, tea.KeyMsg{Type: tea.KeyBackspace})
		default:
			out = append(out, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)})
		}
	}
	return out
}

func TestTabCyclesViewsBothWays(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), SnapshotMsg{fixture()})
	var seen []View
	for range 5 {
		seen = append(seen, m.CurrentView())
		m = update(t, m, keys("tab")...)
	}
	want := []View{ViewModels, ViewPods, ViewRouting, ViewScaling, ViewModels}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("tab order %v, want %v", seen, want)
		}
	}
	m = update(t, m, keys("shift+tab", "shift+tab")...) // from Pods
	if m.CurrentView() != ViewScaling {
		t.Fatalf("shift-tab twice from Pods went to %v, want Scaling", m.CurrentView())
	}
}

func TestFilterNarrowsRowsAndEscClearsIt(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), SnapshotMsg{fixture()})
	m = update(t, m, keys("2", "/", "p", "h", "x", "backspace", "i", "enter")...)
	if m.Filter() != "phi" {
		t.Fatalf("filter %q, want phi", m.Filter())
	}
	r := m.rows()
	if len(r.cells) != 4 {
		t.Fatalf("filter phi shows %d pods, want 4", len(r.cells))
	}
	for _, c := range r.cells {
		if !strings.HasPrefix(c[0], "phi-4-mini") {
			t.Fatalf("filter phi shows %s", c[0])
		}
	}
	m = update(t, m, keys("esc")...)
	if m.Filter() != "" || len(m.rows().cells) != 8 {
		t.Fatalf("esc left filter %q and %d rows", m.Filter(), len(m.rows().cells))
	}
}

func TestEnterOpensPodDetailsAndModelsEnterShowsItsPods(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), SnapshotMsg{fixture()})
	// Models: the second model, enter -> its pods.
	m = update(t, m, keys("down", "enter")...)
	if m.CurrentView() != ViewPods || m.Filter() != "phi-4-mini" {
		t.Fatalf("enter on a model: view %v filter %q, want Pods filtered to phi-4-mini", m.CurrentView(), m.Filter())
	}
	m = update(t, m, keys("enter")...)
	if m.Detail() != "models/phi-4-mini-0-0" {
		t.Fatalf("details of %q, want models/phi-4-mini-0-0", m.Detail())
	}
	v := m.View()
	for _, want := range []string{"Pod models/phi-4-mini-0-0", "dash-worker2 (GPUs 3/4)", "restarts 1", "Started container model", "kaito.sh/workspace=phi-4-mini-0"} {
		if !strings.Contains(v, want) {
			t.Errorf("details lack %q:\n%s", want, v)
		}
	}
	m = update(t, m, keys("esc")...)
	if m.Detail() != "" {
		t.Fatal("esc did not close the details")
	}
}

func TestCursorFollowsShrinkingSnapshots(t *testing.T) {
	m := update(t, update(t, New(Options{Name: "dash"}), SnapshotMsg{fixture()}), keys("2", "G")...)
	if m.cursor[ViewPods] != 7 {
		t.Fatalf("G put the cursor on %d, want 7", m.cursor[ViewPods])
	}
	s := fixture()
	s.Pods = s.Pods[:3]
	m = update(t, m, SnapshotMsg{s})
	if m.cursor[ViewPods] != 2 {
		t.Fatalf("after pods went away the cursor is on %d, want 2", m.cursor[ViewPods])
	}
}

func TestCursorStaysOnScreenInShortTerminals(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), tea.WindowSizeMsg{Width: 80, Height: 8}, SnapshotMsg{fixture()})
	m = update(t, m, keys("2", "G")...)
	v := m.View()
	if !strings.Contains(v, "> phi-4-mini-3-0") {
		t.Fatalf("the last pod is not visible and selected at height 8:\n%s", v)
	}
	if n := strings.Count(v, "\n") + 1; n != 8 {
		t.Fatalf("view has %d lines, want 8", n)
	}
}

// chanLoader is a Loader whose runs report on a channel the test drives.
type chanLoader struct {
	started chan string
	ctx     chan context.Context
	out     chan LoadUpdate
}

func (l *chanLoader) Start(ctx context.Context, namespace, model string) <-chan LoadUpdate {
	l.started <- namespace + "/" + model
	l.ctx <- ctx
	return l.out
}

func TestLoadKeyStartsOnSelectedModelAndStops(t *testing.T) {
	ld := &chanLoader{started: make(chan string, 1), ctx: make(chan context.Context, 1), out: make(chan LoadUpdate, 1)}
	m := update(t, New(Options{Name: "dash", Loader: ld}), SnapshotMsg{fixture()})
	m = update(t, m, keys("2", "down", "down", "down", "down")...) // phi-4-mini-0-0
	next, cmd := m.Update(keys("l")[0])
	m = next.(Model)
	if got := <-ld.started; got != "models/phi-4-mini" {
		t.Fatalf("load started on %s, want models/phi-4-mini", got)
	}
	ctx := <-ld.ctx
	if m.Loading() != "phi-4-mini" || cmd == nil {
		t.Fatalf("loading %q (cmd %v), want phi-4-mini with a wait command", m.Loading(), cmd)
	}
	ld.out <- LoadUpdate{Elapsed: 3 * time.Second, Sent: 40, Done: 35, RPS: 11.7, TTFTp50: 105 * time.Millisecond}
	next, _ = m.Update(cmd())
	m = next.(Model)
	if v := m.View(); !strings.Contains(v, "load phi-4-mini 3s sent 40 done 35 err 0 11.7/s ttft 105ms (l: stop)") {
		t.Fatalf("footer does not show the progress:\n%s", v)
	}
	// Failures say why, so a user sees what to fix without leaving the dashboard.
	ld.out <- LoadUpdate{Elapsed: 4 * time.Second, Sent: 50, Done: 45, Errors: 3, LastError: "401 invalid API key"}
	next, _ = m.Update(cmd())
	m = next.(Model)
	m = update(t, m, tea.WindowSizeMsg{Width: 160, Height: 24})
	if v := m.View(); !strings.Contains(v, "err 3") || !strings.Contains(v, "last error: 401 invalid API key") {
		t.Fatalf("footer does not say why requests fail:\n%s", v)
	}
	m = update(t, m, keys("l")...)
	if m.Loading() != "" {
		t.Fatal("second l did not stop the load")
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
		t.Fatal("stopping did not cancel the run's context")
	}
}

func TestStaleSourcesAreNamed(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), tea.WindowSizeMsg{Width: 200, Height: 24}, SnapshotMsg{staleFixture()})
	v := m.View()
	for _, want := range []string{"STALE metrics, decisions models/phi-4-mini (all 7 pods failed", "; opening the decision stream"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	m = update(t, m, keys("2")...)
	if v := m.View(); !strings.Contains(v, "5.3?") {
		t.Errorf("stale pod metrics are not marked:\n%s", v)
	}
	// A source that only aged (no error) is stale after MetricsStaleAfter.
	s := fixture()
	s.Time = clock.Add(time.Minute)
	m = update(t, New(Options{Name: "dash"}), tea.WindowSizeMsg{Width: 200, Height: 24}, SnapshotMsg{s})
	if v := m.View(); !strings.Contains(v, "STALE metrics (1m01s old)") {
		t.Errorf("aged metrics (and only they) should be stale:\n%s", v)
	}
}

func TestRoutingSaysWhichSource(t *testing.T) {
	m := update(t, update(t, New(Options{Name: "dash"}), tea.WindowSizeMsg{Width: 160, Height: 24}, SnapshotMsg{fixture()}), keys("3")...)
	if v := m.View(); !strings.Contains(v, "source: decision stream") {
		t.Fatalf("routing view does not name its source:\n%s", v)
	}
	m = update(t, m, SnapshotMsg{staleFixture()})
	if v := m.View(); !strings.Contains(v, "source: decision stream (ministral-3b); derived from counter deltas (phi-4-mini)") {
		t.Fatalf("routing view does not name mixed sources:\n%s", v)
	}
	s := fixture()
	s.Decisions = []observe.Decision{{Time: clock, Model: "phi-4-mini", Pod: "phi-4-mini-1-0", Derived: true, Count: 7, Status: "success"}}
	m = update(t, m, SnapshotMsg{s})
	if v := m.View(); !strings.Contains(v, "+7") || !strings.Contains(v, "served (counter delta)") {
		t.Fatalf("derived rows are not shown as such:\n%s", v)
	}
}

func TestNoColorRendersNoEscapes(t *testing.T) {
	m := update(t, New(Options{Name: "dash", Color: false}), SnapshotMsg{fixture()})
	if v := m.View(); strings.Contains(v, "\x1b[") {
		t.Fatalf("NO_COLOR view has escape sequences: %q", v)
	}
	m = update(t, New(Options{Name: "dash", Color: true}), SnapshotMsg{fixture()})
	if v := m.View(); !strings.Contains(v, "\x1b[") {
		t.Fatal("colour view has no escape sequences")
	}
}

func TestQuitStopsTheLoad(t *testing.T) {
	ld := &chanLoader{started: make(chan string, 1), ctx: make(chan context.Context, 1), out: make(chan LoadUpdate)}
	m := update(t, update(t, New(Options{Name: "dash", Loader: ld}), SnapshotMsg{fixture()}), keys("l")...)
	<-ld.started
	ctx := <-ld.ctx
	_, cmd := m.Update(keys("q")[0])
	if cmd == nil {
		t.Fatal("q returned no command")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q did not quit")
	}
	if ctx.Err() == nil {
		t.Fatal("quitting left the load running")
	}
}

func TestContextLineOfAModelWithoutAutoscaling(t *testing.T) {
	s := fixture()
	s.Models[0].Min, s.Models[0].Max, s.Models[0].HasMetric = 0, 0, false
	m := update(t, New(Options{Name: "dash"}), tea.WindowSizeMsg{Width: 200, Height: 24}, SnapshotMsg{s})
	v := m.View()
	if !strings.Contains(v, "http://127.0.0.1:30080 · not autoscaled · 1 pod(s) Pending") {
		t.Fatalf("context line of a fixed-size model:\n%s", v)
	}
}

func TestSelectionSurvivesNewDecisions(t *testing.T) {
	m := update(t, New(Options{Name: "dash"}), SnapshotMsg{fixture()})
	m = update(t, m, keys("3", "down", "down")...)
	before := m.selectedKey(ViewRouting)
	s := fixture()
	for i := range 3 {
		s.Decisions = append(s.Decisions, observe.Decision{Seq: uint64(200 + i), Time: clock.Add(time.Duration(i) * time.Millisecond),
			Model: "phi-4-mini", Pod: "phi-4-mini-1-0", Status: "success"})
	}
	m = update(t, m, SnapshotMsg{s})
	if got := m.selectedKey(ViewRouting); got != before || m.cursor[ViewRouting] != 5 {
		t.Fatalf("after 3 new decisions the selection is %q at %d, want %q at 5", got, m.cursor[ViewRouting], before)
	}
	// At the top, the cursor follows the newest decision.
	m = update(t, m, keys("g")...)
	s.Decisions = append(s.Decisions, observe.Decision{Seq: 300, Time: clock.Add(time.Second), Model: "phi-4-mini", Pod: "phi-4-mini-2-0", Status: "success"})
	m = update(t, m, SnapshotMsg{s})
	if m.cursor[ViewRouting] != 0 || !strings.Contains(m.selectedKey(ViewRouting), "/300/") {
		t.Fatalf("at the top the cursor is at %d on %q, want the newest decision", m.cursor[ViewRouting], m.selectedKey(ViewRouting))
	}
}
