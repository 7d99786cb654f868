package tui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

// informerStale: an informer is event-driven, so a quiet cluster is not a stale one; it is
// stale only when not synced or its watch fails.
const informerStale = 1<<63 - 1

// View implements tea.Model.
func (m Model) View() string {
	w, h := max(m.width, 20), max(m.height, 5)
	lines := []string{m.titleLine(w), m.statusLine(w)}
	var body []string
	ctxLine := ""
	switch {
	case m.help:
		body = helpLines()
	case !m.have:
		body = []string{"", "  waiting for the cluster…"}
	case m.detail != "":
		body = m.detailLines(w)
		if off := min(m.detailOffset, max(len(body)-m.bodyHeight(), 0)); off > 0 {
			body = body[off:]
		}
		ctxLine = "esc/enter: back  ↑↓: scroll  l: load on this pod's model"
	default:
		body, ctxLine = m.tableLines(w)
	}
	bh := h - 4
	for i := range bh {
		if i < len(body) {
			lines = append(lines, clip(body[i], w))
		} else {
			lines = append(lines, "")
		}
	}
	lines = append(lines, m.st.dim.Render(clip(ctxLine, w)), m.footerLine(w))
	return strings.Join(lines, "\n")
}

func (m Model) titleLine(w int) string {
	var tabs []string
	for v := range numViews {
		label := fmt.Sprintf(" %d %s ", v+1, v)
		if v == m.view {
			tabs = append(tabs, m.st.tabOn.Render("["+strings.TrimSpace(label)+"]"))
		} else {
			tabs = append(tabs, m.st.tabOff.Render(label))
		}
	}
	left := m.st.title.Render("sandbox "+m.o.Name) + "  " + strings.Join(tabs, "")
	right := ""
	if m.have {
		right = m.snap.Time.Format("15:04:05")
	}
	gap := w - widthOf(left) - len(right)
	if gap < 1 {
		return clip(left, w)
	}
	return left + strings.Repeat(" ", gap) + right
}

// statusLine sums up the fake GPUs and names every stale source with why.
func (m Model) statusLine(w int) string {
	if !m.have {
		return ""
	}
	var gpus, used int64
	ready := 0
	for _, n := range m.snap.Nodes {
		gpus += n.GPUs
		used += n.GPUsUsed
		if n.Ready {
			ready++
		}
	}
	s := fmt.Sprintf("nodes %d/%d  GPUs %d/%d  models %d  pods %d", ready, len(m.snap.Nodes), used, gpus,
		len(m.snap.Models), len(m.snap.Pods))
	var stale, whys []string
	for _, src := range m.snap.Sources {
		maxAge := time.Duration(informerStale)
		if src.Name == observe.SourceMetrics {
			maxAge = m.o.MetricsStaleAfter
		}
		if !src.Stale(m.snap.Time, maxAge) {
			continue
		}
		why := "not synced"
		switch {
		case src.Err != "":
			why = src.Err
		case !src.Updated.IsZero():
			why = age(m.snap.Time, src.Updated) + " old"
		}
		// Pod metrics first: they feed most columns.
		if src.Name == observe.SourceMetrics {
			stale, whys = append([]string{src.Name}, stale...), append([]string{why}, whys...)
		} else {
			stale, whys = append(stale, src.Name), append(whys, why)
		}
	}
	if len(stale) == 0 {
		return clip(s+"  · all sources live", w)
	}
	return clip(s+"  "+m.st.stale.Render("STALE "+strings.Join(stale, ", ")+" ("+strings.Join(whys, "; ")+")"), w)
}

func (m Model) tableLines(w int) ([]string, string) {
	r := m.rows()
	// Room for the selection marker.
	idx, widths := fit(r.cols, w-2)
	lines := []string{"  " + m.st.header.Render(header(r.cols, idx, widths))}
	hRows := max(m.bodyHeight()-1, 1)
	off := m.offset[m.view]
	cur := m.cursor[m.view]
	for i := off; i < len(r.cells) && i < off+hRows; i++ {
		line := row(r.cols, idx, widths, r.cells[i])
		switch {
		case i == cur:
			line = m.st.selected.Render("> " + pad(line, w-2, false))
		case r.bad[i]:
			line = "  " + m.st.bad.Render(line)
		default:
			line = "  " + line
		}
		lines = append(lines, line)
	}
	if len(r.cells) == 0 {
		empty := "  (nothing yet)"
		if m.filter[m.view] != "" {
			empty = "  (no rows match /" + m.filter[m.view] + ")"
		}
		lines = append(lines, empty)
	}
	return lines, m.contextLine(r)
}

// contextLine explains the selected row: what a table cell has no room for.
func (m Model) contextLine(r rowSet) string {
	c := m.cursor[m.view]
	var s string
	switch m.view {
	case ViewModels:
		if mv, ok := m.selectedModel(); ok && c < len(r.cells) {
			s = dash(mv.Endpoint) + " · "
			if mv.Max == 0 {
				s += "not autoscaled"
			} else {
				s += mv.MetricName
				if mv.HasMetric {
					s += fmt.Sprintf(" %s/replica", num(mv.MetricValue))
				}
				if mv.Threshold > 0 {
					s += fmt.Sprintf(", threshold %s", num(mv.Threshold))
				}
			}
			if mv.Reason != "" {
				s += " · " + mv.Reason
			}
		}
	case ViewPods:
		if p, ok := m.selectedPod(); ok {
			switch {
			case p.PendingReason != "":
				s = p.Name + ": " + p.PendingReason
			case p.Metrics.Err != "":
				s = p.Name + ": metrics: " + p.Metrics.Err
			default:
				s = fmt.Sprintf("%s on %s · metrics %s ago · enter: details", p.Name, dash(p.Node), age(m.snap.Time, p.Metrics.Updated))
			}
		}
	case ViewRouting:
		s = m.decisionSources()
		if c < len(r.key) {
			s += m.decisionScores(r.key[c])
		}
	case ViewScaling:
		s = fmt.Sprintf("%d replica changes and unplaceable pods", len(m.snap.Scaling))
	}
	if f := m.filter[m.view]; f != "" {
		s = "/" + f + "  " + s
	}
	return s
}

func (m Model) footerLine(w int) string {
	if m.filtering {
		return clip("/"+m.input+"█", w)
	}
	if m.load != nil {
		u := m.load.last
		state := "stopped"
		if m.load.running {
			state = "l: stop"
		}
		s := fmt.Sprintf("load %s %s sent %d done %d err %d %.1f/s ttft %s (%s)", m.load.model,
			elapsed(u.Elapsed), u.Sent, u.Done, u.Errors, u.RPS, dur(u.TTFTp50), state)
		switch {
		case u.Err != nil:
			s += " " + u.Err.Error()
		case u.LastError != "" && u.Errors > 0:
			s += " last error: " + u.LastError
		}
		if m.message != "" {
			s = m.message + " · " + s
		}
		return clip(s, w)
	}
	if m.message != "" {
		return clip(m.message, w)
	}
	return m.st.footer.Render(clip("?:help tab:view ↑↓:move /:filter enter:details l:load q:quit", w))
}

func (m Model) detailLines(w int) []string {
	var p *observe.PodView
	for i := range m.snap.Pods {
		if m.snap.Pods[i].Namespace+"/"+m.snap.Pods[i].Name == m.detail {
			p = &m.snap.Pods[i]
		}
	}
	if p == nil {
		return []string{"", "  pod " + m.detail + " is gone"}
	}
	ready := "not ready"
	if p.Ready {
		ready = "ready"
	}
	node := dash(p.Node)
	for _, n := range m.snap.Nodes {
		if n.Name == p.Node {
			node = fmt.Sprintf("%s (GPUs %d/%d)", n.Name, n.GPUsUsed, n.GPUs)
		}
	}
	lines := []string{
		m.st.header.Render(fmt.Sprintf("Pod %s/%s", p.Namespace, p.Name)) + "  model " + p.Model,
		fmt.Sprintf("  node %s  ip %s  %s, %s  restarts %d", node, dash(p.IP), p.Phase, ready, p.Restarts),
	}
	if p.PendingReason != "" {
		lines = append(lines, "  not placed: "+p.PendingReason)
	}
	pm := p.Metrics
	scraped := "never scraped"
	if !pm.Updated.IsZero() {
		scraped = age(m.snap.Time, pm.Updated) + " ago"
	}
	lines = append(lines, "", m.st.header.Render("Metrics")+" ("+scraped+")")
	if pm.Err != "" {
		lines = append(lines, "  "+m.st.stale.Render("last scrape failed: "+pm.Err))
	}
	if !pm.Updated.IsZero() {
		pfx := "-"
		if pm.HasPrefix {
			pfx = fmt.Sprintf("%.0f%%", pm.PrefixHitRate*100)
		}
		lines = append(lines,
			fmt.Sprintf("  running %s  waiting %s  kv-cache %.0f%%  prefix hits %s", num(pm.Running), num(pm.Waiting), pm.KVUsage*100, pfx),
			fmt.Sprintf("  served %.0f (%.1f/s)", pm.Served, pm.RPS))
	}
	lines = append(lines, "", m.st.header.Render("Labels"))
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lines = append(lines, "  "+k+"="+p.Labels[k])
	}
	lines = append(lines, "", m.st.header.Render("Events"))
	if len(p.Events) == 0 {
		lines = append(lines, "  (none)")
	}
	for i := len(p.Events) - 1; i >= 0; i-- {
		e := p.Events[i]
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		lines = append(lines, fmt.Sprintf("  %s ago  %-7s %s%s: %s", age(m.snap.Time, e.Time), e.Type, e.Reason, count, e.Message))
	}
	_ = w
	return lines
}

func helpLines() []string {
	return []string{
		"",
		"  Keys (the same in every view)",
		"",
		"  tab / shift-tab, ←/→   next / previous view (1-4 jump)",
		"  ↑/↓ j/k, pgup/pgdn     move; g/G first/last",
		"  /                      filter the view (enter keeps it, esc clears)",
		"  enter                  Pods: pod details · Models: that model's pods",
		"  l                      start/stop the built-in load on the selected model",
		"  esc                    close details/help, clear the filter",
		"  ?                      this help",
		"  q, ctrl-c              quit",
		"",
		"  Stale sources are named on the second line; pod metrics marked ? are stale.",
	}
}

func widthOf(s string) int { return ansi.StringWidth(s) }

func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// decisionScores spells out the chosen pod's per-scorer scores of the decision with key k.
func (m Model) decisionScores(k string) string {
	for _, d := range m.snap.Decisions {
		if decisionKey(d) != k || d.Derived || len(d.Candidates) == 0 {
			continue
		}
		c := d.Candidates[0]
		for _, cand := range d.Candidates {
			if cand.Pod == d.Pod {
				c = cand
			}
		}
		names := make([]string, 0, len(c.Scores))
		for n := range c.Scores {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(names))
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.TrimSuffix(n, "-scorer"), c.Scores[n]))
		}
		return fmt.Sprintf(" · %s %.2f = %s", shortPod(c.Pod, d.Model), c.Total, strings.Join(parts, ", "))
	}
	return ""
}

func decisionKey(d observe.Decision) string { return fmt.Sprintf("%s/%d/%s", d.Model, d.Seq, d.Time) }
