// Package tui is the `sandbox dashboard` terminal UI: four views (models, pods, routing
// decisions, scaling) over snapshots that internal/observe hands in. The model never calls the
// API server; everything it shows comes from the last snapshot, and every age is measured
// against that snapshot's time, so a frozen source shows as stale instead of blocking.
package tui

import (
	"context"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

// View is one of the dashboard's screens.
type View int

// The views, in tab order.
const (
	ViewModels View = iota
	ViewPods
	ViewRouting
	ViewScaling
	numViews
)

var viewNames = [numViews]string{"Models", "Pods", "Routing", "Scaling"}

func (v View) String() string { return viewNames[v] }

// SnapshotMsg carries a new snapshot into the program.
type SnapshotMsg struct{ observe.Snapshot }

// Loader runs the built-in load on one model until ctx ends. It reports progress on the
// returned channel and closes it when the run is over (its last update carries the outcome).
type Loader interface {
	Start(ctx context.Context, namespace, model string) <-chan LoadUpdate
}

// LoadUpdate is the built-in load's progress.
type LoadUpdate struct {
	Elapsed time.Duration
	Sent    int
	Done    int
	Errors  int
	RPS     float64
	TTFTp50 time.Duration
	// LastError is the most recent failed request's reason.
	LastError string
	// Err is why the run ended early; nil while running or after a clean stop.
	Err error
}

// Options configure the dashboard.
type Options struct {
	// Name is the sandbox's name, shown in the title.
	Name string
	// Color enables colours (off for NO_COLOR and non-terminals).
	Color bool
	// Loader backs the `l` key; nil disables it.
	Loader Loader
	// MetricsStaleAfter is when pod metrics count as stale (6 s: three missed scrapes).
	MetricsStaleAfter time.Duration
}

type loadState struct {
	namespace, model string
	cancel           context.CancelFunc
	ch               <-chan LoadUpdate
	last             LoadUpdate
	running          bool
}

type loadMsg struct {
	ch <-chan LoadUpdate
	u  LoadUpdate
	ok bool
}

// Model is the Bubble Tea model of the dashboard.
type Model struct {
	o  Options
	st styles

	snap observe.Snapshot
	have bool
	// gen counts snapshots; rc caches rows per snapshot (shared by the model's copies, which
	// Bubble Tea makes on every update, and keyed so a copy never sees another's rows).
	gen int
	rc  *rowCache

	view   View
	cursor [numViews]int
	offset [numViews]int
	filter [numViews]string

	filtering bool
	input     string

	width, height int
	help          bool
	detail        string // namespace/name of the pod whose details are open
	detailOffset  int

	load    *loadState
	message string
}

// New returns the dashboard model.
func New(o Options) Model {
	if o.MetricsStaleAfter <= 0 {
		o.MetricsStaleAfter = 6 * time.Second
	}
	return Model{o: o, st: newStyles(o.Color), width: 80, height: 24, rc: &rowCache{}}
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return nil }

// View returns the current view; tests read it.
func (m Model) CurrentView() View { return m.view }

// Filter returns the current view's filter.
func (m Model) Filter() string { return m.filter[m.view] }

// Detail is the pod whose details are open ("" when none).
func (m Model) Detail() string { return m.detail }

// Loading returns the model the built-in load runs on ("" when none).
func (m Model) Loading() string {
	if m.load == nil || !m.load.running {
		return ""
	}
	return m.load.model
}

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.clamp()
	case SnapshotMsg:
		// The selected row stays selected when rows come and go around it; at the top of a
		// newest-first stream the cursor stays on top and follows the stream instead.
		var keep [numViews]string
		for v := range numViews {
			if m.cursor[v] > 0 || (v != ViewRouting && v != ViewScaling) {
				keep[v] = m.selectedKey(v)
			}
		}
		m.snap, m.have = msg.Snapshot, true
		m.gen++
		for v := range numViews {
			if keep[v] == "" {
				continue
			}
			saved := m.view
			m.view = v
			if i := slices.Index(m.rows().key, keep[v]); i >= 0 {
				m.offset[v] += i - m.cursor[v] // the row keeps its place on screen
				m.cursor[v] = i
			}
			m.view = saved
		}
		m.clamp()
	case loadMsg:
		if m.load == nil || m.load.ch != msg.ch {
			return m, nil // a run that was already replaced
		}
		if !msg.ok {
			m.load.running = false
			m.load.cancel()
			return m, nil
		}
		m.load.last = msg.u
		return m, waitLoad(msg.ch)
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func waitLoad(ch <-chan LoadUpdate) tea.Cmd {
	return func() tea.Msg {
		u, ok := <-ch
		return loadMsg{ch: ch, u: u, ok: ok}
	}
}

func (m Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := msg.String()
	if m.filtering {
		switch msg.Type {
		case tea.KeyEnter:
			m.filtering = false
			m.filter[m.view] = m.input
		case tea.KeyEsc:
			m.filtering = false
		case tea.KeyBackspace:
			if r := []rune(m.input); len(r) > 0 {
				m.input = string(r[:len(r)-1])
			}
			m.filter[m.view] = m.input
		case tea.KeyRunes, tea.KeySpace:
			m.input += string(msg.Runes)
			m.filter[m.view] = m.input
		case tea.KeyCtrlC:
			return m.quit()
		}
		m.cursor[m.view], m.offset[m.view] = 0, 0
		return m, nil
	}
	m.message = ""
	switch k {
	case "q", "ctrl+c":
		return m.quit()
	case "?":
		m.help = !m.help
		return m, nil
	case "esc":
		switch {
		case m.help:
			m.help = false
		case m.detail != "":
			m.detail = ""
		default:
			m.filter[m.view] = ""
		}
		return m, nil
	}
	if m.help {
		return m, nil
	}
	if m.detail != "" {
		switch k {
		case "up", "k":
			m.detailOffset = max(m.detailOffset-1, 0)
		case "down", "j":
			m.detailOffset++
		case "enter", "backspace":
			m.detail = ""
		case "l":
			return m.toggleLoad()
		}
		return m, nil
	}
	n := len(m.rows().cells)
	page := max(m.bodyHeight()-1, 1)
	switch k {
	case "tab", "right":
		m.view = (m.view + 1) % numViews
	case "shift+tab", "left":
		m.view = (m.view + numViews - 1) % numViews
	case "1", "2", "3", "4":
		m.view = View(k[0] - '1')
	case "up", "k":
		m.cursor[m.view]--
	case "down", "j":
		m.cursor[m.view]++
	case "pgup":
		m.cursor[m.view] -= page
	case "pgdown", " ":
		m.cursor[m.view] += page
	case "home", "g":
		m.cursor[m.view] = 0
	case "end", "G":
		m.cursor[m.view] = n - 1
	case "/":
		m.filtering, m.input = true, m.filter[m.view]
	case "enter":
		switch m.view {
		case ViewPods:
			if p, ok := m.selectedPod(); ok {
				m.detail, m.detailOffset = p.Namespace+"/"+p.Name, 0
			}
		case ViewModels:
			// A model's pods are one key away.
			if mv, ok := m.selectedModel(); ok {
				m.view = ViewPods
				m.filter[ViewPods], m.cursor[ViewPods], m.offset[ViewPods] = mv.Name, 0, 0
			}
		}
	case "l":
		return m.toggleLoad()
	}
	m.clamp()
	return m, nil
}

func (m Model) quit() (tea.Model, tea.Cmd) {
	if m.load != nil && m.load.running {
		m.load.cancel()
	}
	return m, tea.Quit
}

// toggleLoad stops a running load, or starts one on the selected model.
func (m Model) toggleLoad() (tea.Model, tea.Cmd) {
	if m.load != nil && m.load.running {
		m.load.cancel()
		m.load.running = false
		m.message = "load on " + m.load.model + " stopped"
		return m, nil
	}
	if m.o.Loader == nil {
		m.message = "built-in load is not available"
		return m, nil
	}
	mv, ok := m.selectedModel()
	if !ok {
		m.message = "no model to load"
		return m, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := m.o.Loader.Start(ctx, mv.Namespace, mv.Name)
	m.load = &loadState{namespace: mv.Namespace, model: mv.Name, cancel: cancel, ch: ch, running: true}
	return m, waitLoad(ch)
}

// selectedModel is the model the cursor points at, directly or through a pod, decision or
// scaling event; the first model otherwise.
func (m Model) selectedModel() (observe.ModelView, bool) {
	name, ns := "", ""
	r := m.rows()
	if c := m.cursor[m.view]; c >= 0 && c < len(r.model) {
		name, ns = r.model[c][1], r.model[c][0]
	}
	for _, mv := range m.snap.Models {
		if mv.Name == name && (ns == "" || mv.Namespace == ns) {
			return mv, true
		}
	}
	if len(m.snap.Models) > 0 {
		return m.snap.Models[0], true
	}
	return observe.ModelView{}, false
}

func (m Model) selectedPod() (observe.PodView, bool) {
	if m.view != ViewPods {
		return observe.PodView{}, false
	}
	r := m.rows()
	c := m.cursor[m.view]
	if c < 0 || c >= len(r.key) {
		return observe.PodView{}, false
	}
	for _, p := range m.snap.Pods {
		if p.Namespace+"/"+p.Name == r.key[c] {
			return p, true
		}
	}
	return observe.PodView{}, false
}

// selectedKey is the identity of view v's selected row ("" when none).
func (m Model) selectedKey(v View) string {
	saved := m.view
	m.view = v
	r := m.rows()
	m.view = saved
	if c := m.cursor[v]; c >= 0 && c < len(r.key) {
		return r.key[c]
	}
	return ""
}

// clamp keeps the cursor on a row and the row on screen.
func (m *Model) clamp() {
	for v := range numViews {
		saved := m.view
		m.view = v
		n := len(m.rows().cells)
		m.view = saved
		h := max(m.bodyHeight()-1, 1) // minus the column header
		c := min(m.cursor[v], n-1)
		c = max(c, 0)
		m.cursor[v] = c
		if c < m.offset[v] {
			m.offset[v] = c
		}
		if c >= m.offset[v]+h {
			m.offset[v] = c - h + 1
		}
		m.offset[v] = max(min(m.offset[v], n-h), 0)
	}
}

// bodyHeight is the number of lines between the title/status lines and the footer.
func (m Model) bodyHeight() int {
	// title, status, detail line, footer
	return max(m.height-4, 1)
}

type styles struct {
	title, tabOn, tabOff, header, selected, stale, bad, dim, footer lipgloss.Style
}

func newStyles(color bool) styles {
	r := lipgloss.NewRenderer(nil)
	if color {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	s := styles{
		title:    r.NewStyle().Bold(true),
		tabOn:    r.NewStyle().Bold(true).Reverse(true),
		tabOff:   r.NewStyle(),
		header:   r.NewStyle().Bold(true),
		selected: r.NewStyle().Reverse(true),
		stale:    r.NewStyle().Foreground(lipgloss.Color("214")),
		bad:      r.NewStyle().Foreground(lipgloss.Color("203")),
		dim:      r.NewStyle().Faint(true),
		footer:   r.NewStyle().Faint(true),
	}
	return s
}

func lower(s string) string { return strings.ToLower(s) }
