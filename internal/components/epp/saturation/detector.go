// Package saturation is the picker's utilization detector (llm-d-facts §2.8): one score per
// endpoint from its waiting queue and KV-cache usage, a pool saturation that admission uses to
// shed low-priority requests, and a scheduling filter that keeps requests away from endpoints
// past their limits.
//
// Parameter names, defaults and validation follow GAIE's utilization detector
// (pkg/epp/framework/plugins/flowcontrol/saturationdetector/utilization/config.go and
// detector.go, the v1.5 line; read at kubernetes-sigs/gateway-api-inference-extension commit
// c86af767 (detector_test.go) and the zetxqx fork's commit e7dca1b3 (config.go)). The code here
// is this repository's own.
package saturation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Type is the plugin type name, as upstream registers it.
const Type = "utilization-detector"

// Upstream defaults.
const (
	DefaultQueueDepthThreshold       = 5
	DefaultKVCacheUtilThreshold      = 0.8
	DefaultMetricsStalenessThreshold = 200 * time.Millisecond
	DefaultHeadroom                  = 0.0
)

// Config is a validated detector configuration.
type Config struct {
	// QueueDepthThreshold is the waiting-queue length at which an endpoint counts as full.
	QueueDepthThreshold int
	// KVCacheUtilThreshold is the KV-cache usage (0,1] at which an endpoint counts as full.
	KVCacheUtilThreshold float64
	// MetricsStalenessThreshold is the age after which an endpoint's metrics are not trusted:
	// such an endpoint scores 1 (full) and the filter drops it.
	MetricsStalenessThreshold time.Duration
	// Headroom lets the filter accept endpoints up to threshold × (1 + Headroom); the pool
	// saturation is unaffected by it.
	Headroom float64
}

// DefaultConfig is upstream's configuration when no parameters are given.
func DefaultConfig() Config {
	return Config{QueueDepthThreshold: DefaultQueueDepthThreshold, KVCacheUtilThreshold: DefaultKVCacheUtilThreshold,
		MetricsStalenessThreshold: DefaultMetricsStalenessThreshold, Headroom: DefaultHeadroom}
}

// Validate reports every out-of-range field at once.
func (c Config) Validate() error {
	var errs []error
	if c.QueueDepthThreshold <= 0 {
		errs = append(errs, fmt.Errorf("queueDepthThreshold must be greater than 0, got %d", c.QueueDepthThreshold))
	}
	if !(c.KVCacheUtilThreshold > 0 && c.KVCacheUtilThreshold <= 1) {
		errs = append(errs, fmt.Errorf("kvCacheUtilThreshold must be in (0, 1], got %g", c.KVCacheUtilThreshold))
	}
	if c.MetricsStalenessThreshold <= 0 {
		errs = append(errs, fmt.Errorf("metricsStalenessThreshold must be greater than 0, got %s", c.MetricsStalenessThreshold))
	}
	if !(c.Headroom >= 0) {
		errs = append(errs, fmt.Errorf("headroom must not be negative, got %g", c.Headroom))
	}
	return errors.Join(errs...)
}

// params is the plugin's parameters block; pointers tell "unset" from zero.
type params struct {
	QueueDepthThreshold       *int      `json:"queueDepthThreshold"`
	KVCacheUtilThreshold      *float64  `json:"kvCacheUtilThreshold"`
	MetricsStalenessThreshold *duration `json:"metricsStalenessThreshold"`
	Headroom                  *float64  `json:"headroom"`
}

// duration reads a Go duration string ("200ms"), as metav1.Duration does upstream.
type duration struct{ time.Duration }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("metricsStalenessThreshold must be a duration string such as \"200ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("metricsStalenessThreshold: %w", err)
	}
	d.Duration = v
	return nil
}

// ParseConfig decodes a parameters block strictly, applies defaults and validates.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var p params
	if err := scheduling.DecodeParams(raw, &p); err != nil {
		return Config{}, err
	}
	c := DefaultConfig()
	if p.QueueDepthThreshold != nil {
		c.QueueDepthThreshold = *p.QueueDepthThreshold
	}
	if p.KVCacheUtilThreshold != nil {
		c.KVCacheUtilThreshold = *p.KVCacheUtilThreshold
	}
	if p.MetricsStalenessThreshold != nil {
		c.MetricsStalenessThreshold = p.MetricsStalenessThreshold.Duration
	}
	if p.Headroom != nil {
		c.Headroom = *p.Headroom
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("parameters: %w", err)
	}
	return c, nil
}

// Detector is the utilization detector. It is both a scheduling filter (when a profile
// references it) and the pool's saturation detector (when saturationDetector names it, or by
// default).
type Detector struct {
	tn  scheduling.TypedName
	cfg Config
	now func() time.Time
}

var (
	_ scheduling.Filter             = (*Detector)(nil)
	_ scheduling.SaturationDetector = (*Detector)(nil)
)

// New is the registry factory.
func New(name string, raw json.RawMessage, _ scheduling.Handle) (scheduling.Plugin, error) {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	return NewDetector(name, cfg)
}

// NewDetector builds a detector from a configuration.
func NewDetector(name string, cfg Config) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if name == "" {
		name = Type
	}
	return &Detector{tn: scheduling.TypedName{Type: Type, Name: name}, cfg: cfg, now: time.Now}, nil
}

// Default is the detector admission uses when the config names none: upstream's defaults.
func Default() *Detector {
	d, _ := NewDetector(Type, DefaultConfig())
	return d
}

// TypedName implements scheduling.Plugin.
func (d *Detector) TypedName() scheduling.TypedName { return d.tn }

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// stale reports whether m cannot be trusted at now. An endpoint never scraped has a zero
// UpdateTime and is therefore stale.
func (d *Detector) stale(m *datastore.Metrics, now time.Time) bool {
	return m == nil || m.UpdateTime.IsZero() || now.Sub(m.UpdateTime) > d.cfg.MetricsStalenessThreshold
}

// Score is one endpoint's utilization at now: max(waiting / queueDepthThreshold,
// kvUsage / kvCacheUtilThreshold), or 1 when its metrics are stale. 1 means exactly full; it
// can exceed 1.
func (d *Detector) Score(e *datastore.Endpoint, now time.Time) float64 {
	m := e.Metrics()
	if d.stale(m, now) {
		return 1
	}
	q := float64(m.WaitingQueueSize) / float64(d.cfg.QueueDepthThreshold)
	kv := m.KVCacheUsagePercent / d.cfg.KVCacheUtilThreshold
	return max(q, kv)
}

// SaturationAt is the mean Score over eps; no endpoint at all is 1 (saturated).
func (d *Detector) SaturationAt(now time.Time, eps []*datastore.Endpoint) float64 {
	if len(eps) == 0 {
		return 1
	}
	var sum float64
	for _, e := range eps {
		sum += d.Score(e, now)
	}
	return sum / float64(len(eps))
}

// Saturation implements scheduling.SaturationDetector.
func (d *Detector) Saturation(_ context.Context, eps []*datastore.Endpoint) float64 {
	return d.SaturationAt(d.now(), eps)
}

// Admits reports whether an endpoint is below the filter's limits at now: fresh metrics, waiting
// queue below queueDepthThreshold × (1 + headroom) and KV-cache usage below
// kvCacheUtilThreshold × (1 + headroom).
func (d *Detector) Admits(e *datastore.Endpoint, now time.Time) bool {
	m := e.Metrics()
	if d.stale(m, now) {
		return false
	}
	burst := 1 + d.cfg.Headroom
	return float64(m.WaitingQueueSize) < float64(d.cfg.QueueDepthThreshold)*burst &&
		m.KVCacheUsagePercent < d.cfg.KVCacheUtilThreshold*burst
}

// FilterAt keeps the endpoints Admits accepts; if that is none of them, it returns eps unchanged,
// so that the filter alone never turns a busy pool into 429s (admission decides that).
func (d *Detector) FilterAt(now time.Time, eps []*datastore.Endpoint) []*datastore.Endpoint {
	var out []*datastore.Endpoint
	for _, e := range eps {
		if d.Admits(e, now) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return eps
	}
	return out
}

// Filter implements scheduling.Filter.
func (d *Detector) Filter(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, eps []*datastore.Endpoint) []*datastore.Endpoint {
	return d.FilterAt(d.now(), eps)
}
