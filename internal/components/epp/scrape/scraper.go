package scrape

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	loops map[*datastore.Endpoint]context.CancelFunc
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
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &Scraper{opts: opts, loops: map[*datastore.Endpoint]context.CancelFunc{}}
}

// Run scrapes the store's endpoints until ctx ends, then waits for every loop to stop.
func (s *Scraper) Run(ctx context.Context, store *datastore.Store) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	store.Subscribe(s.changed)
	<-ctx.Done()
	s.mu.Lock()
	for e, cancel := range s.loops {
		cancel()
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
		if cancel, ok := s.loops[e]; ok {
			cancel()
			delete(s.loops, e)
		}
	}
	for _, e := range added {
		if _, ok := s.loops[e]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		s.loops[e] = cancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(ctx, e)
		}()
	}
}

func (s *Scraper) loop(ctx context.Context, e *datastore.Endpoint) {
	url := "http://" + e.Address + s.opts.Path
	var page bytes.Buffer
	var scratch []byte
	failing := false
	// The first scrape is immediate so a new endpoint has metrics before its first request;
	// later ticks get a random phase so that many endpoints do not scrape in lockstep.
	timer := time.NewTimer(0)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
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
		next := s.opts.Interval
		if first {
			next = time.Duration(rand.Int64N(int64(s.opts.Interval))) + 1
			first = false
		}
		timer.Reset(next)
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
