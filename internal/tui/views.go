package tui

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/inference-sandbox/sandbox/internal/observe"
)

// rowSet is one view's table: columns, cells, and for each row its identity and model.
type rowSet struct {
	cols  []column
	cells [][]string
	key   []string
	model [][2]string // namespace, model
	bad   []bool
}

func (r *rowSet) add(key, namespace, model string, bad bool, cells ...string) {
	r.cells = append(r.cells, cells)
	r.key = append(r.key, key)
	r.model = append(r.model, [2]string{namespace, model})
	r.bad = append(r.bad, bad)
}

// rowCache keeps each view's rows for the current snapshot and filter: key handling, layout
// and rendering all ask for them, and a busy routing view has hundreds.
type rowCache struct {
	gen    [numViews]int
	filter [numViews]string
	rows   [numViews]*rowSet
}

// rows returns the current view's rows, filtered.
func (m Model) rows() rowSet {
	c := m.rc
	if c != nil && c.rows[m.view] != nil && c.gen[m.view] == m.gen && c.filter[m.view] == m.filter[m.view] {
		return *c.rows[m.view]
	}
	r := m.buildRows()
	if c != nil {
		c.gen[m.view], c.filter[m.view], c.rows[m.view] = m.gen, m.filter[m.view], &r
	}
	return r
}

func (m Model) buildRows() rowSet {
	var r rowSet
	switch m.view {
	case ViewModels:
		r = m.modelRows()
	case ViewPods:
		r = m.podRows()
	case ViewRouting:
		r = m.routingRows()
	case ViewScaling:
		r = m.scalingRows()
	}
	f := lower(m.filter[m.view])
	if f == "" {
		return r
	}
	out := rowSet{cols: r.cols}
	for i, cells := range r.cells {
		if strings.Contains(lower(strings.Join(cells, " ")), f) {
			out.add(r.key[i], r.model[i][0], r.model[i][1], r.bad[i], cells...)
		}
	}
	return out
}

func (m Model) modelRows() rowSet {
	r := rowSet{cols: []column{
		{title: "MODEL", width: 14, flex: true},
		{title: "READY", width: 5, right: true},
		{title: "PEND", width: 4, right: true, drop: 3},
		{title: "MIN-MAX", width: 7, right: true, drop: 4},
		{title: "METRIC/THR", width: 10, right: true},
		{title: "RPS", width: 6, right: true},
		{title: "TTFT P50/P90", width: 12, right: true, drop: 2},
		{title: "ERR%", width: 5, right: true, drop: 1},
		{title: "ENDPOINT", width: 22, drop: 5},
	}}
	for _, mv := range m.snap.Models {
		rng := "-"
		if mv.Max > 0 {
			rng = fmt.Sprintf("%d-%d", mv.Min, mv.Max)
		}
		metric := "-"
		if mv.HasMetric {
			metric = fmt.Sprintf("%s/%s", num(mv.MetricValue), num(mv.Threshold))
		} else if mv.Threshold > 0 {
			metric = "?/" + num(mv.Threshold)
		}
		ttft := "-"
		if mv.HasTTFT {
			ttft = dur(mv.TTFTp50) + "/" + dur(mv.TTFTp90)
		}
		r.add(mv.Namespace+"/"+mv.Name, mv.Namespace, mv.Name, !mv.ReadyCond,
			mv.Name, fmt.Sprintf("%d/%d", mv.Ready, mv.Desired), fmt.Sprint(mv.Pending), rng, metric,
			fmt.Sprintf("%.1f", mv.RPS), ttft, fmt.Sprintf("%.1f", mv.ErrorRate*100), dash(mv.Endpoint))
	}
	return r
}

func (m Model) podRows() rowSet {
	r := rowSet{cols: []column{
		{title: "POD", width: 18, flex: true},
		{title: "NODE", width: 13, drop: 3},
		{title: "STATUS", width: 8},
		{title: "RUN", width: 4, right: true},
		{title: "WAIT", width: 4, right: true},
		{title: "KV%", width: 4, right: true},
		{title: "PFX%", width: 4, right: true, drop: 4},
		{title: "RPS", width: 5, right: true, drop: 2},
		{title: "SERVED", width: 6, right: true, drop: 6},
		{title: "RST", width: 3, right: true, drop: 5},
	}}
	for _, p := range m.snap.Pods {
		status := p.Phase
		if p.Phase == "Running" && !p.Ready {
			status = "NotReady"
		}
		if p.PendingReason != "" {
			status = "NoGPU"
			if !strings.Contains(p.PendingReason, "nvidia.com/gpu") {
				status = "Unsched"
			}
		}
		run, wait, kv, pfx, rps, served := "-", "-", "-", "-", "-", "-"
		pm := p.Metrics
		if !pm.Updated.IsZero() {
			mark := ""
			if m.metricsStale(pm) {
				mark = "?"
			}
			run, wait = num(pm.Running)+mark, num(pm.Waiting)+mark
			kv = fmt.Sprintf("%.0f%s", pm.KVUsage*100, mark)
			if pm.HasPrefix {
				pfx = fmt.Sprintf("%.0f%s", pm.PrefixHitRate*100, mark)
			}
			rps = fmt.Sprintf("%.1f%s", pm.RPS, mark)
			served = fmt.Sprintf("%.0f", pm.Served)
		}
		r.add(p.Namespace+"/"+p.Name, p.Namespace, p.Model, !p.Ready,
			p.Name, dash(p.Node), status, run, wait, kv, pfx, rps, served, fmt.Sprint(p.Restarts))
	}
	return r
}

func (m Model) metricsStale(pm observe.PodMetrics) bool {
	return pm.Err != "" || m.snap.Time.Sub(pm.Updated) > m.o.MetricsStaleAfter
}

func (m Model) routingRows() rowSet {
	r := rowSet{cols: []column{
		{title: "TIME", width: 8},
		{title: "MODEL", width: 12, drop: 3},
		{title: "POD", width: 18},
		{title: "STATUS", width: 6},
		{title: "LAT", width: 6, right: true, drop: 2},
		{title: "PREFIX", width: 6, right: true, drop: 1},
		{title: "SCORES (TOTAL)", width: 12, flex: true},
	}}
	// Newest first: the stream is what is happening now.
	for i := len(m.snap.Decisions) - 1; i >= 0; i-- {
		d := m.snap.Decisions[i]
		status, lat, prefix, scores := d.Status, dur(d.Latency), "-", ""
		if d.Derived {
			status, lat = fmt.Sprintf("+%d", d.Count), "-"
			scores = "served (counter delta)"
		} else {
			var parts []string
			for _, c := range d.Candidates {
				parts = append(parts, fmt.Sprintf("%s:%.1f", shortPod(c.Pod, d.Model), c.Total))
			}
			scores = strings.Join(parts, " ")
			if d.HasPrefix {
				prefix = fmt.Sprintf("%d/%d", d.PrefixMatched, d.PrefixTotal)
			}
			if d.Status != "success" {
				if d.HTTPStatus != 0 {
					status = fmt.Sprint(d.HTTPStatus)
				}
				scores = strings.TrimSuffix(d.Status+": "+d.Error, ": ")
			}
		}
		if status == "success" {
			status = "ok"
		}
		r.add(decisionKey(d), "", d.Model, !d.Derived && d.Status != "success",
			m.clock(d.Time), d.Model, dash(d.Pod), status, lat, prefix, scores)
	}
	return r
}

func (m Model) scalingRows() rowSet {
	r := rowSet{cols: []column{
		{title: "TIME", width: 8},
		{title: "MODEL", width: 12},
		{title: "CHANGE", width: 9},
		{title: "METRIC/THR", width: 10, right: true},
		{title: "DETAIL", width: 20, flex: true},
	}}
	for i := len(m.snap.Scaling) - 1; i >= 0; i-- {
		e := m.snap.Scaling[i]
		change, metric, detail := "", "-", e.Message
		switch e.Kind {
		case observe.KindUnschedulable:
			change = "NoGPU"
			if !strings.Contains(e.Message, "nvidia.com/gpu") {
				change = "Unsched"
			}
			detail = e.Pod + ": " + e.Message
		default:
			arrow := "↑"
			if e.Kind == observe.KindScaleDown {
				arrow = "↓"
			}
			change = fmt.Sprintf("%s %d→%d", arrow, e.From, e.To)
			if e.Past {
				change = fmt.Sprintf("%s →%d", arrow, e.To)
			}
			if e.HasValue {
				metric = num(e.Value) + "/" + num(e.Threshold)
			}
			var parts []string
			for _, p := range []string{e.Metric, e.Message} {
				if p != "" {
					parts = append(parts, p)
				}
			}
			detail = strings.Join(parts, " · ")
		}
		r.add(fmt.Sprintf("%s/%s/%s", e.Time, e.Model, e.Pod), "", e.Model, e.Kind == observe.KindUnschedulable,
			m.clock(e.Time), e.Model, change, metric, detail)
	}
	return r
}

// decisionSources says where the routing rows come from, per model when they differ.
func (m Model) decisionSources() string {
	bySource := map[string][]string{}
	for _, mv := range m.snap.Models {
		bySource[mv.DecisionSource] = append(bySource[mv.DecisionSource], mv.Name)
	}
	switch len(bySource) {
	case 0:
		return "source: -"
	case 1:
		for s := range bySource {
			return "source: " + s
		}
	}
	var parts []string
	for s, ms := range bySource {
		sort.Strings(ms)
		parts = append(parts, s+" ("+strings.Join(ms, ", ")+")")
	}
	sort.Strings(parts)
	return "source: " + strings.Join(parts, "; ")
}

func (m Model) clock(t time.Time) string {
	if loc := m.snap.Time.Location(); loc != nil {
		t = t.In(loc)
	}
	return t.Format("15:04:05")
}

// shortPod drops the model prefix pod names share, to fit more candidates on a line.
func shortPod(pod, model string) string {
	if s, ok := strings.CutPrefix(pod, model+"-"); ok && s != "" {
		return s
	}
	return pod
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e6 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
