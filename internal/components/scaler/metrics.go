package scaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Endpoint is one model pod's metrics URL.
type Endpoint struct {
	Pod string
	URL string
}

// Scraper reads one metric from model pods' Prometheus pages.
type Scraper struct {
	Client *http.Client
	// Timeout bounds each pod's scrape; upstream uses 3 s (facts §3.5).
	Timeout time.Duration
	// MaxBytes caps a page: a misbehaving pod must not exhaust the scaler's memory.
	MaxBytes int64
}

// NewScraper returns a Scraper with upstream's timeout.
func NewScraper() *Scraper {
	return &Scraper{Client: &http.Client{}, Timeout: 3 * time.Second, MaxBytes: 16 << 20}
}

// PodValue is one pod's scrape result.
type PodValue struct {
	Pod   string
	Value float64
	Err   error
}

// Sum scrapes every endpoint concurrently and adds up metric over them. Following upstream's
// sum aggregator, a pod that answers without the metric counts as 0 (e.g. a simulator that has
// not served yet), and so does a pod that fails, because one unreachable replica must not stop
// the others from scaling the set up. Only when every scrape fails is the sum unknown.
func (s *Scraper) Sum(ctx context.Context, endpoints []Endpoint, metric string) (float64, []PodValue, error) {
	if len(endpoints) == 0 {
		return 0, nil, errNoEndpoints
	}
	results := make([]PodValue, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			v, err := s.scrape(ctx, ep.URL, metric)
			results[i] = PodValue{Pod: ep.Pod, Value: v, Err: err}
		})
	}
	wg.Wait()
	var sum float64
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", r.Pod, r.Err))
			continue
		}
		sum += r.Value
	}
	if len(errs) == len(results) {
		return 0, results, fmt.Errorf("no model pod could be scraped: %w", errors.Join(errs...))
	}
	return sum, results, nil
}

var errNoEndpoints = errors.New("no running model pods")

func (s *Scraper) scrape(ctx context.Context, url, metric string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("building the request for %s: %w", url, err)
	}
	// Ask for the text format: it is what expfmt's text parser reads.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return SumFamily(io.LimitReader(resp.Body, s.MaxBytes), metric)
}

// SumFamily parses a Prometheus text page and adds up every series of one family: a pod
// serving several models (LoRA adapters) reports one series per model, and they all queue on
// the same replica. A missing family is 0.
func SumFamily(page io.Reader, metric string) (float64, error) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(page)
	if err != nil {
		return 0, fmt.Errorf("parsing the metrics page: %w", err)
	}
	fam, ok := fams[metric]
	if !ok {
		return 0, nil
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		switch fam.GetType() {
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		default:
			return 0, fmt.Errorf("metric %s is a %s; only gauges and counters can be summed", metric, fam.GetType())
		}
	}
	return sum, nil
}
