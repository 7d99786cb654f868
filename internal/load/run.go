package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often Run reports progress.
const progressEvery = 250 * time.Millisecond

// Run sends the configured load and returns its report. It returns when the run's duration or
// request count is reached and every request has ended (each is bounded by RequestTimeout), or
// when ctx is cancelled; then in-flight requests are abandoned, the report covers what ended
// and says Interrupted. onProgress, if not nil, is called from one goroutine about 4×/s.
func Run(ctx context.Context, cfg Config, onProgress func(Progress)) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{
		cfg:    cfg,
		gen:    newGenerator(cfg.Workload),
		client: newHTTPClient(cfg),
		col:    newCollector(),
		target: strings.TrimRight(cfg.URL, "/") + "/v1/chat/completions",
	}
	defer r.client.CloseIdleConnections()
	return r.run(ctx, onProgress)
}

// newHTTPClient never uses a proxy from the environment and never follows redirects, so no
// request can be sent anywhere but the checked target.
func newHTTPClient(cfg Config) *http.Client {
	conns := cfg.Concurrency
	if cfg.Rate > 0 {
		conns = min(cfg.MaxInFlight, 1024)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type runner struct {
	cfg    Config
	gen    *generator
	client *http.Client
	col    *collector
	target string

	start, measureFrom, end time.Time
	claimed                 atomic.Int64 // measured requests started, against cfg.Requests
}

func (r *runner) run(ctx context.Context, onProgress func(Progress)) (*Report, error) {
	r.start = time.Now()
	r.measureFrom = r.start.Add(r.cfg.Warmup)
	if r.cfg.Duration > 0 {
		r.end = r.measureFrom.Add(r.cfg.Duration)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The pods' counters are read when the measured window opens and after the last request.
	var podsBefore map[string]float64
	var podErr error
	baseline := make(chan struct{})
	go func() {
		defer close(baseline)
		if r.cfg.PodCounter == nil {
			return
		}
		select {
		case <-time.After(time.Until(r.measureFrom)):
		case <-runCtx.Done():
			return
		}
		podsBefore, podErr = r.cfg.PodCounter.Counts(runCtx)
	}()
	if r.cfg.Warmup == 0 {
		<-baseline // no request may start before the baseline
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if onProgress == nil {
			<-stopProgress
			return
		}
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				onProgress(r.progress())
				return
			case <-t.C:
				onProgress(r.progress())
			}
		}
	}()

	var wg sync.WaitGroup
	if r.cfg.Rate > 0 {
		r.openLoop(runCtx, &wg)
	} else {
		r.closedLoop(runCtx, &wg)
	}
	dispatchEnded := time.Now()
	wg.Wait()
	close(stopProgress)
	<-progressDone
	<-baseline

	rep := r.col.report(r.cfg, r.measureFrom, dispatchEnded)
	rep.Interrupted = ctx.Err() != nil
	if r.cfg.PodCounter != nil && ctx.Err() == nil {
		switch {
		case podErr != nil:
			rep.PodError = podErr.Error()
		case podsBefore == nil:
			rep.PodError = "the measured window never opened"
		default:
			after, err := settledCounts(ctx, r.cfg.PodCounter)
			if err != nil {
				rep.PodError = err.Error()
			} else {
				rep.Pods = shares(podsBefore, after)
			}
		}
	}
	return rep, nil
}

// settledCounts reads the counters until two reads 100 ms apart agree (at most 1 s): a
// server may count a request just after its client saw the last byte.
func settledCounts(ctx context.Context, c PodCounter) (map[string]float64, error) {
	prev, err := c.Counts(ctx)
	if err != nil {
		return nil, err
	}
	for range 10 {
		select {
		case <-ctx.Done():
			return prev, nil
		case <-time.After(100 * time.Millisecond):
		}
		cur, err := c.Counts(ctx)
		if err != nil {
			return nil, err
		}
		if sum(cur) == sum(prev) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// claim reports whether a request scheduled at t may be sent, counting it against the
// request budget when it falls in the measured window.
func (r *runner) claim(t time.Time) (measured, ok bool) {
	if !r.end.IsZero() && !t.Before(r.end) {
		return false, false
	}
	measured = !t.Before(r.measureFrom)
	if measured && r.cfg.Requests > 0 && r.claimed.Add(1) > int64(r.cfg.Requests) {
		return true, false
	}
	return measured, true
}

// openLoop sends on a Poisson schedule fixed in advance: a request's latency runs from its
// scheduled time, so when the client falls behind (MaxInFlight reached, a slow machine) the
// delay counts against the system under test instead of silently lowering the rate.
func (r *runner) openLoop(ctx context.Context, wg *sync.WaitGroup) {
	rng := rand.New(rand.NewPCG(uint64(r.cfg.Workload.Seed), 0xa11))
	slots := make(chan struct{}, r.cfg.MaxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := r.start
	for {
		measured, ok := r.claim(next)
		if !ok {
			return
		}
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		wg.Add(1)
		r.col.sent(measured)
		go func(scheduled time.Time) {
			defer wg.Done()
			defer func() { <-slots }()
			r.do(ctx, scheduled, measured)
		}(next)
		next = next.Add(time.Duration(rng.ExpFloat64() / r.cfg.Rate * float64(time.Second)))
	}
}

// minErrorBackoff and maxErrorBackoff bound a closed-loop client's pause after a failure.
const (
	minErrorBackoff = 10 * time.Millisecond
	maxErrorBackoff = time.Second
)

// closedLoop runs Concurrency clients that each send the next request as the last one ends.
func (r *runner) closedLoop(ctx context.Context, wg *sync.WaitGroup) {
	for range r.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client whose requests fail backs off, so that a target answering errors at once
			// (a gateway without its authz, a wrong key) is not hammered thousands of times a
			// second; the first success resets it.
			var backoff time.Duration
			for ctx.Err() == nil {
				now := time.Now()
				measured, ok := r.claim(now)
				if !ok {
					return
				}
				r.col.sent(measured)
				if !r.do(ctx, now, measured) {
					backoff = 0
					continue
				}
				backoff = min(max(2*backoff, minErrorBackoff), maxErrorBackoff)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
			}
		}()
	}
}

// chatRequest is the body sent; ignore_eos makes every answer exactly max_tokens long, so
// runs are comparable.
type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []message      `json:"messages"`
	MaxTokens     int            `json:"max_tokens"`
	IgnoreEOS     bool           `json:"ignore_eos"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// result is what one request measured.
type result struct {
	scheduled time.Time
	measured  bool
	status    int    // HTTP status; 0 when no response arrived
	failure   string // non-empty for any failure
	canceled  bool   // abandoned because the run was cancelled: not counted
	ttft, e2e time.Duration
	// lag is how late the request left the client compared with its schedule.
	lag       time.Duration
	gaps      []time.Duration
	outTokens int
	ended     time.Time
}

// do sends one request, records it and reports whether it failed.
func (r *runner) do(ctx context.Context, scheduled time.Time, measured bool) (failed bool) {
	res := result{scheduled: scheduled, measured: measured}
	r.send(ctx, &res)
	res.ended = time.Now()
	res.e2e = res.ended.Sub(scheduled)
	if res.failure != "" && ctx.Err() != nil {
		res.canceled = true
	}
	r.col.record(&res)
	return res.failure != ""
}

func (r *runner) send(ctx context.Context, res *result) {
	body, err := json.Marshal(chatRequest{
		Model: r.cfg.Model, Messages: r.gen.next(), MaxTokens: r.cfg.MaxTokens, IgnoreEOS: true,
		Stream: r.cfg.Stream, StreamOptions: streamOpts(r.cfg.Stream),
	})
	if err != nil {
		res.failure = err.Error()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.target, bytes.NewReader(body))
	if err != nil {
		res.failure = err.Error()
		return
	}
	addHeaders(req, r.cfg.Headers)
	req.Header.Set("Content-Type", "application/json")
	if r.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.APIKey)
	}
	res.lag = time.Since(res.scheduled)
	resp, err := r.client.Do(req)
	if err != nil {
		res.failure = transportFailure(err)
		return
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		res.failure = fmt.Sprintf("%d %s", resp.StatusCode, errorMessage(b))
		return
	}
	if r.cfg.Stream {
		readStream(resp.Body, res)
		return
	}
	var c struct {
		Usage *struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&c); err != nil {
		res.failure = "reading answer: " + transportFailure(err)
		return
	}
	if c.Usage != nil {
		res.outTokens = c.Usage.CompletionTokens
	}
}

func streamOpts(stream bool) *streamOptions {
	if !stream {
		return nil
	}
	return &streamOptions{IncludeUsage: true}
}

// readStream reads an SSE answer: TTFT is the first data line from the scheduled time, and
// the inter-token latencies are the gaps between chunks that carry content.
func readStream(body io.Reader, res *result) {
	br := bufio.NewReaderSize(body, 32<<10)
	var lastToken time.Time
	sawDone := false
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			now := time.Now()
			payload, isData := bytes.CutPrefix(line, []byte("data:"))
			if isData {
				payload = bytes.TrimSpace(payload)
				if res.ttft == 0 {
					res.ttft = now.Sub(res.scheduled)
				}
				if string(payload) == "[DONE]" {
					sawDone = true
					continue
				}
				var chunk streamChunk
				if jerr := json.Unmarshal(payload, &chunk); jerr != nil {
					res.failure = "malformed SSE chunk: " + truncate(string(payload), 120)
					return
				}
				if chunk.Error != nil {
					res.failure = "error in stream: " + chunk.Error.Message
					return
				}
				if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
					if !lastToken.IsZero() {
						res.gaps = append(res.gaps, now.Sub(lastToken))
					}
					lastToken = now
				}
				if chunk.Usage != nil {
					res.outTokens = chunk.Usage.CompletionTokens
				}
			}
		}
		if err != nil {
			if !sawDone {
				if errors.Is(err, io.EOF) {
					res.failure = "stream ended without [DONE]"
				} else {
					res.failure = "reading stream: " + transportFailure(err)
				}
			}
			return
		}
	}
}

// readLine returns one line without its line ending; lines longer than the buffer are
// joined, as chunks carrying long tool calls can be.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	return bytes.TrimRight(line, "\r\n"), err
}

// errorMessage extracts an OpenAI error envelope's message, or the start of the body.
func errorMessage(b []byte) string {
	var env struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &env) == nil && env.Error.Message != "" {
		return truncate(env.Error.Message, 200)
	}
	return truncate(strings.TrimSpace(string(b)), 200)
}

func transportFailure(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// statusKey is the status-code table's key: the HTTP code, or why there was none.
func statusKey(res *result) string {
	switch {
	case res.status != 0 && res.status != http.StatusOK:
		return strconv.Itoa(res.status)
	case res.status == http.StatusOK && res.failure != "":
		return "200-incomplete"
	case res.status == http.StatusOK:
		return "200"
	case res.failure == "timed out":
		return "timeout"
	}
	return "no-response"
}

// streamChunk is what the generator and chat read of a streamed chat-completion chunk.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}
