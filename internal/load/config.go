// Package load generates OpenAI chat traffic against the sandbox's gateway and measures it:
// open-loop Poisson arrivals or closed-loop clients, bounded in time and count, with TTFT,
// inter-token and end-to-end latency quantiles, status codes and each pod's share of the work.
package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Bounds that keep a mistyped flag from turning into a flood or a run that never ends.
const (
	MaxRate        = 5000.0
	MaxConcurrency = 1024
	MaxDuration    = time.Hour
	MaxWarmup      = 10 * time.Minute
	MaxRequests    = 1_000_000
	MaxOutTokens   = 32_768
)

// Config is one load run.
type Config struct {
	// URL is the gateway base URL, e.g. http://127.0.0.1:30080; requests go to
	// URL/v1/chat/completions. It must be loopback or one of AllowedHosts.
	URL    string
	APIKey string
	Model  string
	// Rate > 0 runs open loop: Poisson arrivals at Rate req/s, each sent on schedule whatever
	// the others do. Rate 0 runs closed loop: Concurrency clients, each sending its next
	// request when the previous one ends.
	Rate        float64
	Concurrency int
	// Duration is the measured window (after Warmup); Requests stops after that many measured
	// requests instead. At least one must be set; with both, whichever comes first.
	Duration time.Duration
	Warmup   time.Duration
	Requests int
	Workload Workload
	// Stream asks for SSE answers; TTFT and inter-token latency need it.
	Stream    bool
	MaxTokens int
	// PodCounter, when set, gives each pod's share of the measured requests from its counters.
	PodCounter PodCounter
	// AllowedHosts are extra hosts (host or host:port) the run may target, for the sandbox's own
	// gateway address when it is not loopback.
	AllowedHosts []string
	// RequestTimeout bounds each request (default 60 s); MaxInFlight bounds open-loop
	// requests outstanding at once (default 4096) — arrivals beyond it wait in the client, and
	// that wait counts in their latency.
	RequestTimeout time.Duration
	MaxInFlight    int
	// Headers are sent with every request, e.g. x-gateway-inference-objective to run the load
	// under an InferenceObjective (ParseHeaders reads them from flags).
	Headers http.Header
}

// PodCounter reads a monotonically increasing per-pod request counter (for model pods,
// vllm:request_success_total summed over its labels).
type PodCounter interface {
	Counts(ctx context.Context) (map[string]float64, error)
}

// Progress is a snapshot of a running load, emitted about four times a second.
type Progress struct {
	Elapsed time.Duration
	// Warmup is true while requests are not yet measured.
	Warmup bool
	Sent   int
	Done   int
	Errors int
	// LastError is the most recent failure ("" while none), so a live view can say why.
	LastError string
	// InFlight is Sent - Done.
	InFlight int
	// RPS is the completion rate over the last few seconds.
	RPS float64
	// TTFTp50 is over the last few seconds' completions (0 without streaming).
	TTFTp50 time.Duration
}

func (c *Config) defaults() {
	c.Workload.defaults()
	if c.MaxTokens == 0 {
		c.MaxTokens = 32
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 60 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4096
	}
	if c.Rate == 0 && c.Concurrency == 0 {
		c.Concurrency = 1
	}
}

// Validate applies defaults and checks that the run is bounded and targets this machine.
func (c *Config) Validate() error {
	c.defaults()
	if err := CheckTarget(c.URL, c.AllowedHosts); err != nil {
		return err
	}
	if c.Model == "" {
		return errors.New("no model: name the model to load")
	}
	switch {
	case c.Rate < 0 || c.Rate > MaxRate:
		return fmt.Errorf("rate %g req/s: want 0 (closed loop) up to %g", c.Rate, MaxRate)
	case c.Rate > 0 && c.Concurrency > 0:
		return errors.New("choose one of rate (open loop) and concurrency (closed loop)")
	case c.Concurrency < 0 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency %d: want 1..%d", c.Concurrency, MaxConcurrency)
	case c.Duration <= 0 && c.Requests <= 0:
		return errors.New("unbounded run: set a duration or a number of requests")
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("duration %s: want at most %s", c.Duration, MaxDuration)
	case c.Warmup < 0 || c.Warmup > MaxWarmup:
		return fmt.Errorf("warm-up %s: want 0..%s", c.Warmup, MaxWarmup)
	case c.Requests < 0 || c.Requests > MaxRequests:
		return fmt.Errorf("requests %d: want 0..%d", c.Requests, MaxRequests)
	case c.MaxTokens < 1 || c.MaxTokens > MaxOutTokens:
		return fmt.Errorf("max tokens %d: want 1..%d", c.MaxTokens, MaxOutTokens)
	case c.RequestTimeout < 0 || c.RequestTimeout > 10*time.Minute:
		return fmt.Errorf("request timeout %s: want at most 10m", c.RequestTimeout)
	case c.MaxInFlight < 1 || c.MaxInFlight > 65536:
		return fmt.Errorf("max in flight %d: want 1..65536", c.MaxInFlight)
	}
	if err := checkHeaders(c.Headers); err != nil {
		return err
	}
	return c.Workload.validate()
}

// CheckTarget refuses any URL that is not http(s) on a loopback address, localhost, or one of
// allowed: load and chat must never send traffic off this machine.
func CheckTarget(raw string, allowed []string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("target %q is not an http(s) base URL like http://127.0.0.1:30080", raw)
	}
	host := u.Hostname()
	if slices.Contains(allowed, u.Host) || slices.Contains(allowed, host) {
		return nil
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to send load to %s: only loopback (127.0.0.0/8, ::1, localhost) or the sandbox's own gateway", u.Host)
}
