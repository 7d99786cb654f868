// Package decision keeps a record of every routing decision for the dashboard: a ring of the
// most recent ones and a live newline-delimited JSON stream.
//
// Recording costs one ring write: the scheduler's result is kept by pointer and only turned
// into JSON when someone reads it, so a picker nobody watches does no encoding work.
package decision

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

// Record is one decision. Exported fields are set by the caller; Result, when present, supplies
// the candidates and per-scorer scores at encoding time.
type Record struct {
	Time        time.Time
	RequestID   string
	Model       string
	TargetModel string
	// Status is "success" or upstream's error code (BadRequest, ResourceExhausted, ...).
	Status     string
	HTTPStatus int
	Error      string
	// Bodyless marks header-only requests, which go to a random endpoint without scoring.
	Bodyless bool
	Duration time.Duration
	Endpoint string // chosen address (primary)
	Name     string // chosen endpoint's name
	Result   *scheduling.Result
}

type candidateJSON struct {
	Endpoint string             `json:"endpoint"`
	Name     string             `json:"name"`
	Total    float64            `json:"total"`
	Scores   map[string]float64 `json:"scores"`
	Queue    int                `json:"waitingQueue"`
	Running  int                `json:"running"`
	KV       float64            `json:"kvCacheUsage"`
	InFlight int64              `json:"inFlight"`
}

type prefixJSON struct {
	MatchedBlocks int     `json:"matchedBlocks"`
	TotalBlocks   int     `json:"totalBlocks"`
	BlockChars    int     `json:"blockChars"`
	MatchedChars  int     `json:"matchedChars"`
	HitRatio      float64 `json:"hitRatio"`
}

type recordJSON struct {
	Seq           uint64             `json:"seq"`
	Time          time.Time          `json:"time"`
	RequestID     string             `json:"requestId"`
	Model         string             `json:"model"`
	TargetModel   string             `json:"targetModel,omitempty"`
	Status        string             `json:"status"`
	HTTPStatus    int                `json:"httpStatus,omitempty"`
	Error         string             `json:"error,omitempty"`
	Bodyless      bool               `json:"bodyless,omitempty"`
	DurationMicro float64            `json:"schedulingMicros"`
	Endpoint      string             `json:"endpoint,omitempty"`
	Name          string             `json:"endpointName,omitempty"`
	Fallbacks     []string           `json:"fallbacks,omitempty"`
	Weights       map[string]float64 `json:"weights,omitempty"`
	Candidates    []candidateJSON    `json:"candidates,omitempty"`
	Prefix        *prefixJSON        `json:"prefix,omitempty"`
}

// entry is a record with its sequence number.
type entry struct {
	seq uint64
	rec *Record
}

// MarshalJSON renders the record. Candidate metrics are read at encoding time, which for the
// live stream is within microseconds of the decision.
func (e entry) MarshalJSON() ([]byte, error) {
	r := e.rec
	out := recordJSON{
		Seq: e.seq, Time: r.Time, RequestID: r.RequestID, Model: r.Model, TargetModel: r.TargetModel,
		Status: r.Status, HTTPStatus: r.HTTPStatus, Error: r.Error, Bodyless: r.Bodyless,
		DurationMicro: float64(r.Duration.Nanoseconds()) / 1e3, Endpoint: r.Endpoint, Name: r.Name,
	}
	if res := r.Result; res != nil {
		for _, t := range res.Targets[1:] {
			out.Fallbacks = append(out.Fallbacks, t.Address)
		}
		out.Weights = map[string]float64{}
		for _, s := range res.Scores {
			out.Weights[s.Name] = s.Weight
		}
		for i, c := range res.Candidates {
			m := c.Metrics()
			cj := candidateJSON{Endpoint: c.Address, Name: c.Name, Total: res.Totals[i],
				Scores: make(map[string]float64, len(res.Scores)), Queue: m.WaitingQueueSize,
				Running: m.RunningRequestsSize, KV: m.KVCacheUsagePercent, InFlight: c.InFlight()}
			for _, s := range res.Scores {
				cj.Scores[s.Name] = s.Values[i]
			}
			out.Candidates = append(out.Candidates, cj)
		}
		if p := res.State.Prefix; p.Valid {
			pj := &prefixJSON{MatchedBlocks: p.MatchedBlocks, TotalBlocks: p.TotalBlocks,
				BlockChars: p.BlockSize, MatchedChars: p.MatchedBlocks * p.BlockSize}
			if p.TotalBlocks > 0 {
				pj.HitRatio = float64(p.MatchedBlocks) / float64(p.TotalBlocks)
			}
			out.Prefix = pj
		}
	}
	return json.Marshal(out)
}

// Ring holds the last N records and fans new ones out to followers.
type Ring struct {
	mu        sync.Mutex
	buf       []entry
	next      uint64 // sequence number of the next record; buf[seq % len] holds it
	followers map[chan entry]struct{}
}

// NewRing returns a ring of the given capacity.
func NewRing(capacity int) *Ring {
	return &Ring{buf: make([]entry, max(capacity, 1)), followers: map[chan entry]struct{}{}}
}

// Add records r. Followers that cannot keep up miss records rather than slow the request path;
// the gap shows in the sequence numbers.
func (g *Ring) Add(r *Record) {
	g.mu.Lock()
	e := entry{seq: g.next, rec: r}
	g.buf[g.next%uint64(len(g.buf))] = e
	g.next++
	for ch := range g.followers {
		select {
		case ch <- e:
		default:
		}
	}
	g.mu.Unlock()
}

// Recent returns up to n of the newest records, oldest first.
func (g *Ring) Recent(n int) []entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recentLocked(n)
}

func (g *Ring) recentLocked(n int) []entry {
	count := min(uint64(n), g.next, uint64(len(g.buf)))
	out := make([]entry, 0, count)
	for seq := g.next - count; seq < g.next; seq++ {
		out = append(out, g.buf[seq%uint64(len(g.buf))])
	}
	return out
}

// follow registers a follower and returns the backlog atomically with it, so no record falls
// between the two.
func (g *Ring) follow(backlog int) ([]entry, chan entry) {
	ch := make(chan entry, 1024)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.followers[ch] = struct{}{}
	return g.recentLocked(backlog), ch
}

func (g *Ring) unfollow(ch chan entry) {
	g.mu.Lock()
	delete(g.followers, ch)
	g.mu.Unlock()
}
