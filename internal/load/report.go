package load

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one run; only requests scheduled in the measured window (after
// the warm-up) count, wherever they ended.
type Report struct {
	Model       string   `json:"model"`
	URL         string   `json:"url"`
	Mode        string   `json:"mode"` // open-loop or closed-loop
	Rate        float64  `json:"rate,omitempty"`
	Concurrency int      `json:"concurrency,omitempty"`
	Workload    Workload `json:"workload"`
	Stream      bool     `json:"stream"`
	MaxTokens   int      `json:"maxTokens"`

	WarmupSeconds float64 `json:"warmupSeconds"`
	// WindowSeconds runs from the end of the warm-up to the end of the last measured request.
	WindowSeconds float64 `json:"windowSeconds"`
	// Sent, Requests: measured requests sent and ended (they differ only when interrupted).
	Sent           int  `json:"sent"`
	Requests       int  `json:"requests"`
	Succeeded      int  `json:"succeeded"`
	Failed         int  `json:"failed"`
	WarmupRequests int  `json:"warmupRequests"`
	Interrupted    bool `json:"interrupted,omitempty"`

	// ThroughputRPS counts successful requests per second of the window.
	ThroughputRPS float64 `json:"throughputRps"`
	// OutputTokensPerSec counts the answers' tokens (from usage) per second of the window.
	OutputTokensPerSec float64 `json:"outputTokensPerSec"`

	// TTFT runs from the scheduled send time to the first SSE data line (streaming only);
	// ITL is every gap between consecutive content chunks; E2E from scheduled time to the end.
	TTFT Latency `json:"ttft"`
	ITL  Latency `json:"itl"`
	E2E  Latency `json:"e2e"`
	// SendLag runs from each request's scheduled time to its leaving the client: in open loop,
	// large values mean this client could not keep the schedule (the latencies above still
	// count from the schedule). It is ~0 in closed loop.
	SendLag Latency `json:"sendLag"`

	// StatusCodes counts measured requests by HTTP status; "200-incomplete" is a stream that
	// broke off, "timeout" and "no-response" are requests without a status.
	StatusCodes  map[string]int `json:"statusCodes"`
	ErrorSamples []string       `json:"errorSamples,omitempty"`

	// Pods is each pod's share of the requests its counters saw during the window.
	Pods     []PodShare `json:"pods,omitempty"`
	PodError string     `json:"podError,omitempty"`
}

// Latency summarises one histogram in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"meanMs"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

// PodShare is one pod's part of the measured requests.
type PodShare struct {
	Pod      string  `json:"pod"`
	Requests float64 `json:"requests"`
	Share    float64 `json:"share"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func latencyOf(h *Histogram) Latency {
	return Latency{
		Count: h.Count(), Mean: ms(h.Mean()),
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)), Max: ms(h.Quantile(1)),
	}
}

func (c *collector) report(cfg Config, measureFrom, dispatchEnded time.Time) *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &Report{
		Model: cfg.Model, URL: cfg.URL, Workload: cfg.Workload, Stream: cfg.Stream, MaxTokens: cfg.MaxTokens,
		WarmupSeconds: cfg.Warmup.Seconds(),
		Sent:          c.sentMeasured, Requests: c.done, Succeeded: c.ok, Failed: c.failed,
		WarmupRequests: c.warmupDone,
		TTFT:           latencyOf(&c.ttft), ITL: latencyOf(&c.itl), E2E: latencyOf(&c.e2e), SendLag: latencyOf(&c.lag),
		StatusCodes: maps.Clone(c.statuses), ErrorSamples: slices.Clone(c.errorSamples),
	}
	if cfg.Rate > 0 {
		r.Mode, r.Rate = "open-loop", cfg.Rate
	} else {
		r.Mode, r.Concurrency = "closed-loop", cfg.Concurrency
	}
	end := dispatchEnded
	if c.lastEnd.After(end) {
		end = c.lastEnd
	}
	if w := end.Sub(measureFrom); w > 0 {
		r.WindowSeconds = w.Seconds()
		r.ThroughputRPS = float64(c.ok) / w.Seconds()
		r.OutputTokensPerSec = float64(c.outTokens) / w.Seconds()
	}
	return r
}

// shares turns two counter readings into per-pod deltas; pods that appeared count from zero,
// and a counter that went down (a restarted pod) counts from its new value.
func shares(before, after map[string]float64) []PodShare {
	var out []PodShare
	var total float64
	for _, pod := range slices.Sorted(maps.Keys(after)) {
		d := after[pod] - before[pod]
		if d < 0 {
			d = after[pod]
		}
		out = append(out, PodShare{Pod: pod, Requests: d})
		total += d
	}
	for i := range out {
		if total > 0 {
			out[i].Share = out[i].Requests / total
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	load := fmt.Sprintf("%d clients (closed loop)", r.Concurrency)
	if r.Mode == "open-loop" {
		load = fmt.Sprintf("%g req/s Poisson (open loop)", r.Rate)
	}
	stream := "streamed"
	if !r.Stream {
		stream = "not streamed"
	}
	fmt.Fprintf(tw, "Model\t%s at %s\n", r.Model, r.URL)
	fmt.Fprintf(tw, "Load\t%s, %s, %s, %d tokens per answer\n", load, describeWorkload(r.Workload), stream, r.MaxTokens)
	fmt.Fprintf(tw, "Window\t%.1fs measured after %.0fs warm-up (%d warm-up requests not counted)\n", r.WindowSeconds, r.WarmupSeconds, r.WarmupRequests)
	interrupted := ""
	if r.Interrupted {
		interrupted = fmt.Sprintf(", interrupted with %d unfinished", r.Sent-r.Requests)
	}
	fmt.Fprintf(tw, "Requests\t%d ok, %d failed%s\n", r.Succeeded, r.Failed, interrupted)
	fmt.Fprintf(tw, "Throughput\t%.2f req/s, %.0f output tokens/s\n", r.ThroughputRPS, r.OutputTokensPerSec)
	if r.Mode == "open-loop" && r.SendLag.Count > 0 {
		fmt.Fprintf(tw, "Client lag\tp50 %s, p99 %s behind schedule\n", fmtMs(r.SendLag.P50), fmtMs(r.SendLag.P99))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "LATENCY\tP50\tP90\tP99\tMAX\tMEAN\tSAMPLES")
	for _, l := range []struct {
		name string
		l    Latency
	}{{"TTFT", r.TTFT}, {"ITL", r.ITL}, {"E2E", r.E2E}} {
		if l.l.Count == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t0\n", l.name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", l.name, fmtMs(l.l.P50), fmtMs(l.l.P90), fmtMs(l.l.P99), fmtMs(l.l.Max), fmtMs(l.l.Mean), l.l.Count)
	}
	fmt.Fprintln(tw)
	var codes []string
	for _, k := range slices.Sorted(maps.Keys(r.StatusCodes)) {
		codes = append(codes, fmt.Sprintf("%s×%d", k, r.StatusCodes[k]))
	}
	if len(codes) == 0 {
		codes = []string{"none"}
	}
	fmt.Fprintf(tw, "Status codes\t%s\n", strings.Join(codes, "  "))
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(tw, "Error\t%s\n", e)
	}
	if r.PodError != "" {
		fmt.Fprintf(tw, "Pods\tunknown: %s\n", r.PodError)
	}
	if len(r.Pods) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "POD\tREQUESTS\tSHARE")
		for _, p := range r.Pods {
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f%%\n", p.Pod, p.Requests, 100*p.Share)
		}
		if note := r.otherTraffic(); note != "" {
			fmt.Fprintln(tw, note)
		}
	}
	return tw.Flush()
}

func describeWorkload(w Workload) string {
	switch w.Kind {
	case KindSharedPrefix:
		q := "new questions"
		if w.SuffixesPerFamily > 0 {
			q = fmt.Sprintf("%d questions each", w.SuffixesPerFamily)
		}
		return fmt.Sprintf("shared-prefix (%d families × %d-char prefix, %s of %d words)", w.Families, w.PrefixChars, q, w.QuestionTokens)
	case KindMultiTurn:
		return fmt.Sprintf("multi-turn (%d conversations × %d turns)", w.Families, w.Turns)
	}
	return fmt.Sprintf("random (%d-char context + %d words)", w.PrefixChars, w.QuestionTokens)
}

func fmtMs(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	}
	return fmt.Sprintf("%.1fms", v)
}

// otherTraffic explains pod counts well above this run's successes: the pods' counters see
// every request they served in the window, this run's or not (another load, the dashboard's).
func (r *Report) otherTraffic() string {
	var total float64
	for _, p := range r.Pods {
		total += p.Requests
	}
	ok := float64(r.Succeeded)
	if total-ok < 2 || total < 1.05*ok {
		return ""
	}
	return fmt.Sprintf("(the pods served %.0f requests in the window, %d of them this run's: other traffic reached them)", total, r.Succeeded)
}
