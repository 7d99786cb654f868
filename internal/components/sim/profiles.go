package sim

import (
	"regexp"
	"slices"
	"strconv"
	"time"
)

// ProfileAuto picks a latency profile from the model size in the served model name.
const ProfileAuto = "auto"

// latencyProfile is one row of the gpu-node-mocker's profile table
// (shared/facts/upstream-production-stack.md §4.4).
type latencyProfile struct {
	itl, itlStd                 time.Duration
	timeFactorUnderLoad         float64
	ttft, ttftStd               time.Duration // constant calculator
	kvLatency, kvLatencyStd     time.Duration // constant calculator
	prefillOverhead             time.Duration // per-token calculator
	prefillPerToken, prefillStd time.Duration
	kvPerToken, kvPerTokenStd   time.Duration
}

var latencyProfiles = map[string]latencyProfile{
	"small-l40s": {
		itl: 15 * time.Millisecond, itlStd: 2 * time.Millisecond, timeFactorUnderLoad: 1.5,
		ttft: 110 * time.Millisecond, ttftStd: 15 * time.Millisecond,
		kvLatency: 5 * time.Millisecond, kvLatencyStd: time.Millisecond,
		prefillOverhead: 20 * time.Millisecond, prefillPerToken: 350 * time.Microsecond, prefillStd: 70 * time.Microsecond,
		kvPerToken: 12 * time.Microsecond, kvPerTokenStd: 2400 * time.Nanosecond,
	},
	"8b-h100": {
		itl: 12 * time.Millisecond, itlStd: 2 * time.Millisecond, timeFactorUnderLoad: 2.0,
		ttft: 100 * time.Millisecond, ttftStd: 20 * time.Millisecond,
		kvLatency: 2 * time.Millisecond, kvLatencyStd: 400 * time.Microsecond,
		prefillOverhead: 30 * time.Millisecond, prefillPerToken: 250 * time.Microsecond, prefillStd: 50 * time.Microsecond,
		kvPerToken: 3 * time.Microsecond, kvPerTokenStd: 600 * time.Nanosecond,
	},
	"70b-tp8": {
		itl: 25 * time.Millisecond, itlStd: 4 * time.Millisecond, timeFactorUnderLoad: 3.0,
		ttft: 200 * time.Millisecond, ttftStd: 40 * time.Millisecond,
		kvLatency: 2 * time.Millisecond, kvLatencyStd: 400 * time.Microsecond,
		prefillOverhead: 80 * time.Millisecond, prefillPerToken: 500 * time.Microsecond, prefillStd: 100 * time.Microsecond,
		kvPerToken: 8 * time.Microsecond, kvPerTokenStd: 1600 * time.Nanosecond,
	},
}

// ProfileNames lists the accepted --latency-profile values.
func ProfileNames() []string {
	names := []string{ProfileAuto}
	for n := range latencyProfiles {
		names = append(names, n)
	}
	slices.Sort(names[1:])
	return names
}

// modelSize finds "<number>b" tokens such as "8b", "3.8B" or "70b" in a model name.
var modelSize = regexp.MustCompile(`(?i)(\d+(?:\.\d+)?)b(?:[^a-z0-9]|$)`)

// autoProfile mirrors the mocker's choice: the largest size in the name decides; names
// without a size (phi-4-mini) are treated as mid-sized.
func autoProfile(model string) string {
	largest := -1.0
	for _, m := range modelSize.FindAllStringSubmatch(model, -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil && v > largest {
			largest = v
		}
	}
	switch {
	case largest < 0:
		return "8b-h100"
	case largest < 5:
		return "small-l40s"
	case largest < 25:
		return "8b-h100"
	default:
		return "70b-tp8"
	}
}

// applyLatencyProfile presets the latency knobs from c.LatencyProfile. Keys in explicit (set
// in YAML or on the command line) keep their values, so a profile is a starting point. As in
// the mocker, the calculator defaults to per-token and only its own knobs are filled in.
func (c *Config) applyLatencyProfile(explicit map[string]bool) {
	name := c.LatencyProfile
	if name == "" {
		return
	}
	if name == ProfileAuto {
		name = autoProfile(c.DisplayModel())
	}
	p, ok := latencyProfiles[name]
	if !ok {
		return // Validate reports it
	}
	setD := func(key string, dst *Duration, v time.Duration) {
		if !explicit[key] {
			*dst = Duration(v)
		}
	}
	if !explicit["latency-calculator"] && c.LatencyCalculator == "" {
		c.LatencyCalculator = CalculatorPerToken
	}
	setD("inter-token-latency", &c.InterTokenLatency, p.itl)
	setD("inter-token-latency-std-dev", &c.InterTokenLatencyStdDev, p.itlStd)
	if !explicit["time-factor-under-load"] {
		c.TimeFactorUnderLoad = p.timeFactorUnderLoad
	}
	if c.LatencyCalculator == CalculatorConstant {
		setD("time-to-first-token", &c.TimeToFirstToken, p.ttft)
		setD("time-to-first-token-std-dev", &c.TimeToFirstTokenStdDev, p.ttftStd)
		setD("kv-cache-transfer-latency", &c.KVCacheTransferLatency, p.kvLatency)
		setD("kv-cache-transfer-latency-std-dev", &c.KVCacheTransferLatencyStdDev, p.kvLatencyStd)
		return
	}
	setD("prefill-overhead", &c.PrefillOverhead, p.prefillOverhead)
	setD("prefill-time-per-token", &c.PrefillTimePerToken, p.prefillPerToken)
	setD("prefill-time-std-dev", &c.PrefillTimeStdDev, p.prefillStd)
	setD("kv-cache-transfer-time-per-token", &c.KVCacheTransferTimePerToken, p.kvPerToken)
	setD("kv-cache-transfer-time-std-dev", &c.KVCacheTransferTimeStdDev, p.kvPerTokenStd)
}
