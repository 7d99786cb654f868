package scrape

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
)

// Options configure a Scraper. Zero values take upstream defaults (llm-d-facts §2.1).
type Options struct {
	// Interval is the per-endpoint scrape period (upstream --refresh-metrics-interval, 50ms).
	Interval time.Duration
	// Timeout bounds one scrape; a slow endpoint only delays its own loop.
	Timeout time.Duration
	// Path of the metrics page on the endpoint's own port.
	Path   string
	Client *http.Client
	Log    *slog.Logger
}

// Scraper runs one polling loop per endpoint, started and stopped as the store's membership
// changes. Loops are independent goroutines so that one hung model server cannot delay the
// metrics of the others.
type Scraper struct {
	opts  Options
	mu    sync.Mutex
	loops map[*datastore.Endpoint]loopHandle
	ctx   context.Context
	wg    sync.WaitGroup
}

// New returns a scraper; call Run to start it.
func New(opts Options) *Scraper {
	if opts.Interval <= 0 {
		opts.Interval = 50 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Path == "" {
		opts.Path = "/metrics"
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			// Pod IPs must never go through an HTTP proxy picked up from the environment.
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			// Decompressing 20 pages a second per endpoint costs more CPU than the bytes it saves
			// on a pod network.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 2,
			// A vLLM metrics page is tens of kilobytes; with the default 4 KiB buffer reading it
			// takes a read system call per chunk, which was the largest idle cost.
			ReadBufferSize:  64 << 10,
			IdleConnTimeout: 90 * time.Second,
		}}
	}
	return &Scraper{opts: opts, loops: map[*datastore.Endpoint]loopHandle{}}
}

type loopHandle struct {
	cancel context.CancelFunc
	tick   chan struct{}
}

// Run scrapes the store's endpoints until ctx ends, then waits for every loop to stop.
func (s *Scraper) Run(ctx context.Context, store *datastore.Store) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	store.Subscribe(s.changed)
	s.tick(ctx)
	s.mu.Lock()
	for e, l := range s.loops {
		l.cancel()
		delete(s.loops, e)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Scraper) changed(added, removed []*datastore.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	for _, e := range removed {
		if l, ok := s.loops[e]; ok {
			l.cancel()
			delete(s.loops, e)
		}
	}
	for _, e := range added {
		if _, ok := s.loops[e]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		l := loopHandle{cancel: cancel, tick: make(chan struct{}, 1)}
		s.loops[e] = l
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(ctx, e, l.tick)
		}()
	}
}

func (s *Scraper) loop(ctx context.Context, e *datastore.Endpoint, tick <-chan struct{}) {
	url := "http://" + e.Address + s.opts.Path
	var page bytes.Buffer
	var scratch []byte
	failing := false
	// The first scrape is immediate so a new endpoint has metrics before its first request.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
		var err error
		scratch, err = s.scrapeOnce(ctx, url, &page, scratch, e)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.opts.Log.Debug("scrape failed", "endpoint", e.Name, "address", e.Address, "error", err)
			failing = true
		case err == nil && failing:
			s.opts.Log.Debug("scrape recovered", "endpoint", e.Name)
			failing = false
		}
	}
}

// tick fans one ticker out to every endpoint loop. All endpoints are scraped in the same
// wake-up: on an idle picker the cost of waking the process dominates the cost of a scrape, so
// four endpoints on one 50 ms tick cost little more than one. A loop still busy with a slow
// endpoint misses the tick (its channel holds one) instead of delaying anyone.
func (s *Scraper) tick(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for _, l := range s.loops {
			select {
			case l.tick <- struct{}{}:
			default:
			}
		}
		s.mu.Unlock()
	}
}

func (s *Scraper) scrapeOnce(ctx context.Context, url string, page *bytes.Buffer, scratch []byte, e *datastore.Endpoint) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return scratch, fmt.Errorf("build request for %s: %w", url, err)
	}
	// Ask for the text format explicitly: a protobuf or OpenMetrics answer would defeat the
	// line filter in Parse.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return scratch, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	page.Reset()
	if _, err := page.ReadFrom(resp.Body); err != nil {
		return scratch, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return scratch, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	m, scratch, err := Parse(page.Bytes(), scratch, time.Now())
	if err != nil {
		return scratch, fmt.Errorf("%s: %w", url, err)
	}
	e.SetMetrics(m)
	return scratch, nil
}
