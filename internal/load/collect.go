package load

import (
	"sync"
	"time"
)

// liveWindow is the span progress rates and TTFT are computed over: two halves rotate so the
// figures follow the load within a few seconds without keeping every sample.
const liveWindow = 2 * time.Second

// maxErrorSamples bounds the distinct failure messages a report keeps.
const maxErrorSamples = 5

// collector aggregates results; one mutex is plenty at the rates a 2-core machine can drive.
type collector struct {
	mu sync.Mutex

	sentAll, doneAll, errorsAll int
	sentMeasured                int

	// measured window
	ttft, itl, e2e   Histogram
	lag              Histogram
	done, ok, failed int
	outTokens        int
	lastEnd          time.Time
	statuses         map[string]int
	errorSamples     []string
	// lastError is the most recent failure, warm-up included, for the progress line.
	lastError          string
	errorSampleSeen    map[string]bool
	warmupDone, cancel int

	// live window for progress
	liveStart         time.Time
	livePrev, liveCur Histogram
	prevDone, curDone int
	started           time.Time
}

func newCollector() *collector {
	now := time.Now()
	return &collector{statuses: map[string]int{}, errorSampleSeen: map[string]bool{}, liveStart: now, started: now}
}

func (c *collector) sent(measured bool) {
	c.mu.Lock()
	c.sentAll++
	if measured {
		c.sentMeasured++
	}
	c.mu.Unlock()
}

func (c *collector) rotateLocked(now time.Time) {
	for now.Sub(c.liveStart) >= liveWindow {
		c.livePrev, c.liveCur = c.liveCur, c.livePrev
		c.liveCur.Reset()
		c.prevDone, c.curDone = c.curDone, 0
		c.liveStart = c.liveStart.Add(liveWindow)
		if now.Sub(c.liveStart) >= 2*liveWindow {
			// Idle for a while: both halves are stale.
			c.livePrev.Reset()
			c.prevDone = 0
			c.liveStart = now
		}
	}
}

func (c *collector) record(res *result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if res.canceled {
		c.cancel++
		return
	}
	c.rotateLocked(res.ended)
	c.doneAll++
	c.curDone++
	if res.failure != "" {
		c.errorsAll++
		c.lastError = res.failure
	} else if res.ttft > 0 {
		c.liveCur.Record(res.ttft)
	}
	if !res.measured {
		c.warmupDone++
		return
	}
	c.done++
	c.lag.Record(res.lag)
	c.statuses[statusKey(res)]++
	if res.ended.After(c.lastEnd) {
		c.lastEnd = res.ended
	}
	if res.failure != "" {
		c.failed++
		if len(c.errorSamples) < maxErrorSamples && !c.errorSampleSeen[res.failure] {
			c.errorSampleSeen[res.failure] = true
			c.errorSamples = append(c.errorSamples, res.failure)
		}
		return
	}
	c.ok++
	c.outTokens += res.outTokens
	c.e2e.Record(res.e2e)
	if res.ttft > 0 {
		c.ttft.Record(res.ttft)
	}
	for _, g := range res.gaps {
		c.itl.Record(g)
	}
}

func (r *runner) progress() Progress {
	c := r.col
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotateLocked(now)
	p := Progress{
		Elapsed: now.Sub(r.start), Warmup: now.Before(r.measureFrom),
		Sent: c.sentAll, Done: c.doneAll + c.cancel, Errors: c.errorsAll, LastError: c.lastError,
	}
	p.InFlight = p.Sent - p.Done
	span := now.Sub(c.liveStart)
	if c.liveStart.After(c.started) {
		span += liveWindow
	}
	if span > 0 {
		p.RPS = float64(c.curDone+c.prevDone) / span.Seconds()
	}
	var h Histogram
	h.Merge(&c.livePrev)
	h.Merge(&c.liveCur)
	p.TTFTp50 = h.Quantile(0.5)
	return p
}
