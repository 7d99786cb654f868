package observe

import "time"

// Snapshot is everything the dashboard shows at one moment. The watcher builds it from its
// caches a few times a second and hands over a copy, so the view never touches a cache or the
// API server and never waits on a slow source.
type Snapshot struct {
	// Time is when the snapshot was taken; views compute every age against it (not the wall
	// clock), which keeps rendering deterministic.
	Time      time.Time
	Models    []ModelView
	Pods      []PodView
	Nodes     []NodeView
	Decisions []Decision // oldest first, bounded
	Scaling   []ScalingEvent
	Sources   []Source
}

// Source is one data feed with the time it last delivered; a view marks it stale when that
// time is too old or when Err is set.
type Source struct {
	Name    string
	Updated time.Time
	Err     string
}

// Stale reports whether the source has not delivered within maxAge of now, or is failing.
func (s Source) Stale(now time.Time, maxAge time.Duration) bool {
	return s.Err != "" || s.Updated.IsZero() || now.Sub(s.Updated) > maxAge
}

// Decision sources a model's routing rows come from.
const (
	SourceStream  = "decision stream"
	SourceDerived = "derived from counter deltas"
)

// ModelView is one InferenceSet with its autoscaling and traffic over the last minute.
type ModelView struct {
	Name      string
	Namespace string
	Desired   int32
	Ready     int32
	// Pending counts pods that exist but are not scheduled or not yet running.
	Pending int32
	// Min and Max are the autoscaling range; zero when the model is not autoscaled.
	Min, Max   int
	MetricName string
	Threshold  float64
	// MetricValue is the HPA's last observed value of the scaling metric (per replica);
	// HasMetric is false until the HPA has reported one.
	MetricValue float64
	HasMetric   bool
	RPS         float64
	TTFTp50     time.Duration
	TTFTp90     time.Duration
	HasTTFT     bool
	// ErrorRate is the share of failed routing decisions over the last minute (0..1).
	ErrorRate      float64
	Endpoint       string
	DecisionSource string
	ReadyCond      bool
	Reason         string
}

// PodView is one model-server pod.
type PodView struct {
	Name      string
	Namespace string
	Model     string
	Node      string
	IP        string
	Phase     string
	Ready     bool
	Restarts  int32
	// PendingReason is the scheduler's message for an unschedulable pod.
	PendingReason string
	Labels        map[string]string
	Events        []EventLine
	Metrics       PodMetrics
}

// PodMetrics are the simulator's vllm:* metrics, scraped through the API server's pod proxy.
type PodMetrics struct {
	Updated time.Time // zero: never scraped successfully
	Err     string
	Running float64
	Waiting float64
	KVUsage float64
	// PrefixHitRate is hits/queries over the last minute (0..1); HasPrefix is false without queries.
	PrefixHitRate float64
	HasPrefix     bool
	// Served is vllm:request_success_total; RPS its rate over the last few scrapes.
	Served float64
	RPS    float64
}

// EventLine is one Kubernetes event about an object.
type EventLine struct {
	Time    time.Time
	Type    string
	Reason  string
	Message string
	Count   int32
}

// NodeView is a node with its fake GPUs.
type NodeView struct {
	Name     string
	Ready    bool
	GPUs     int64
	GPUsUsed int64
}

// Decision is one routing decision of an endpoint picker, or, when the picker offers no
// decision record, the requests a pod served between two scrapes (Derived).
type Decision struct {
	Seq        uint64
	Time       time.Time
	Model      string
	Pod        string
	Endpoint   string
	Status     string
	HTTPStatus int
	Error      string
	Latency    time.Duration
	// Candidates are the scored pods, best first.
	Candidates    []Candidate
	PrefixMatched int
	PrefixTotal   int
	PrefixRatio   float64
	HasPrefix     bool
	Derived       bool
	Count         int // derived rows: requests served in the interval
}

// Candidate is one scored pod of a decision.
type Candidate struct {
	Pod      string
	Endpoint string
	Total    float64
	Scores   map[string]float64
	Waiting  int
	Running  int
	KV       float64
}

// ScalingEvent is one line of the scaling timeline: a replica change with the metric that
// caused it, or a pod the scheduler could not place.
type ScalingEvent struct {
	Time      time.Time
	Model     string
	Kind      string // ScaleUp, ScaleDown, Unschedulable
	From, To  int32
	Metric    string
	Value     float64
	HasValue  bool
	Threshold float64
	Pod       string
	Message   string
	// Past is an entry read from the HPA's events of before the watcher started: From and the
	// reading are unknown.
	Past bool

	// confirmed: the HPA's status has reported the reading behind this change.
	confirmed bool
}

// Scaling event kinds.
const (
	KindScaleUp       = "ScaleUp"
	KindScaleDown     = "ScaleDown"
	KindUnschedulable = "Unschedulable"
)
