package sim

import "time"

// latencyModel turns the latency knobs into per-request delays (facts §1.10).
type latencyModel struct {
	cfg  Config
	rand *lockedRand
	zero bool
}

func newLatencyModel(cfg Config, r *lockedRand) *latencyModel {
	l := &latencyModel{cfg: cfg, rand: r}
	l.zero = l.computeZero()
	return l
}

// isZero reports whether no delay can ever be produced, which lets the request path skip
// timers entirely.
func (l *latencyModel) isZero() bool { return l.zero }

func (l *latencyModel) computeZero() bool {
	c := &l.cfg
	return c.TimeToFirstToken == 0 && c.TimeToFirstTokenStdDev == 0 && c.InterTokenLatency == 0 &&
		c.InterTokenLatencyStdDev == 0 && c.PrefillOverhead == 0 && c.PrefillTimePerToken == 0 &&
		c.PrefillTimeStdDev == 0 && c.KVCacheTransferLatency == 0 && c.KVCacheTransferLatencyStdDev == 0 &&
		c.KVCacheTransferTimePerToken == 0 && c.KVCacheTransferTimeStdDev == 0
}

// loadFactor grows linearly from 1 with one running request to time-factor-under-load with
// max-num-seqs running ones.
func (l *latencyModel) loadFactor(running int) float64 {
	if l.cfg.MaxNumSeqs <= 1 || running <= 1 {
		return 1
	}
	return 1 + (l.cfg.TimeFactorUnderLoad-1)*float64(running-1)/float64(l.cfg.MaxNumSeqs-1)
}

func scale(d Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

// timeToFirstToken is the simulated prefill time of one sub-request. The load factor never
// applies to KV-transfer latencies, and only the per-token form profits from cached tokens.
func (l *latencyModel) timeToFirstToken(running, promptTokens, cachedTokens int, remotePrefill bool) time.Duration {
	c := &l.cfg
	if remotePrefill {
		perToken := c.LatencyCalculator == CalculatorPerToken ||
			(c.LatencyCalculator == "" && c.KVCacheTransferLatency == 0 && c.KVCacheTransferLatencyStdDev == 0)
		if perToken {
			return l.jitter(time.Duration(promptTokens)*c.KVCacheTransferTimePerToken.D(), c.KVCacheTransferTimeStdDev.D())
		}
		return l.jitter(c.KVCacheTransferLatency.D(), c.KVCacheTransferLatencyStdDev.D())
	}
	f := l.loadFactor(running)
	perToken := c.LatencyCalculator == CalculatorPerToken ||
		(c.LatencyCalculator == "" && c.TimeToFirstToken == 0 && c.TimeToFirstTokenStdDev == 0)
	if perToken {
		uncached := max(promptTokens-cachedTokens, 0)
		prefill := scale(c.PrefillOverhead, f) + time.Duration(uncached)*scale(c.PrefillTimePerToken, f)
		return l.jitter(prefill, c.PrefillTimeStdDev.D())
	}
	return l.jitter(scale(c.TimeToFirstToken, f), c.TimeToFirstTokenStdDev.D())
}

// interTokenLatency is the delay before each token after the first.
func (l *latencyModel) interTokenLatency(running int) time.Duration {
	return l.jitter(scale(l.cfg.InterTokenLatency, l.loadFactor(running)), l.cfg.InterTokenLatencyStdDev.D())
}

// jitter draws from Normal(mean, std) clamped to [0.3, 1.7]×mean. Like upstream it works in
// whole milliseconds: both inputs are truncated first, so sub-millisecond knobs produce 0.
func (l *latencyModel) jitter(mean, std time.Duration) time.Duration {
	mean = mean.Truncate(time.Millisecond)
	std = std.Truncate(time.Millisecond)
	if std <= 0 || mean <= 0 {
		return mean
	}
	v := float64(mean) + l.rand.NormFloat64()*float64(std)
	lo, hi := 0.3*float64(mean), 1.7*float64(mean)
	v = min(max(v, lo), hi)
	return time.Duration(v).Truncate(time.Millisecond)
}
