package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// OpenStream opens an endpoint picker's decision stream (GET /decisions?follow=1, docs/epp.md
// "Decision stream"). The watcher reaches it through the API server's service proxy; tests
// hand in a loopback server.
type OpenStream func(ctx context.Context, namespace, model string, backlog int) (io.ReadCloser, error)

// decisionJSON is the picker's record as docs/epp.md documents it.
type decisionJSON struct {
	Seq          uint64    `json:"seq"`
	Time         time.Time `json:"time"`
	Model        string    `json:"model"`
	Status       string    `json:"status"`
	HTTPStatus   int       `json:"httpStatus"`
	Error        string    `json:"error"`
	Micros       float64   `json:"schedulingMicros"`
	Endpoint     string    `json:"endpoint"`
	EndpointName string    `json:"endpointName"`
	Candidates   []struct {
		Endpoint string             `json:"endpoint"`
		Name     string             `json:"name"`
		Total    float64            `json:"total"`
		Scores   map[string]float64 `json:"scores"`
		Waiting  int                `json:"waitingQueue"`
		Running  int                `json:"running"`
		KV       float64            `json:"kvCacheUsage"`
	} `json:"candidates"`
	Prefix *struct {
		MatchedBlocks int     `json:"matchedBlocks"`
		TotalBlocks   int     `json:"totalBlocks"`
		HitRatio      float64 `json:"hitRatio"`
	} `json:"prefix"`
}

// ParseDecision decodes one line of the decision stream. model names the InferenceSet the
// picker serves, which a record of a failed request may not carry.
func ParseDecision(line []byte, model string) (Decision, error) {
	var r decisionJSON
	if err := json.Unmarshal(line, &r); err != nil {
		return Decision{}, fmt.Errorf("decoding decision record: %w", err)
	}
	d := Decision{Seq: r.Seq, Time: r.Time, Model: model, Pod: r.EndpointName, Endpoint: r.Endpoint,
		Status: r.Status, HTTPStatus: r.HTTPStatus, Error: r.Error,
		Latency: time.Duration(r.Micros * float64(time.Microsecond))}
	if d.Pod == "" {
		d.Pod = r.Endpoint
	}
	for _, c := range r.Candidates {
		name := c.Name
		if name == "" {
			name = c.Endpoint
		}
		d.Candidates = append(d.Candidates, Candidate{Pod: name, Endpoint: c.Endpoint, Total: c.Total, Scores: c.Scores,
			Waiting: c.Waiting, Running: c.Running, KV: c.KV})
	}
	sort.SliceStable(d.Candidates, func(i, j int) bool { return d.Candidates[i].Total > d.Candidates[j].Total })
	if p := r.Prefix; p != nil {
		d.HasPrefix, d.PrefixMatched, d.PrefixTotal, d.PrefixRatio = true, p.MatchedBlocks, p.TotalBlocks, p.HitRatio
	}
	return d, nil
}

// follow reads one model's decision stream until ctx ends, reconnecting with a capped
// exponential backoff. onState reports the stream's health (nil error: connected).
func follow(ctx context.Context, open OpenStream, namespace, model string, onDecision func(Decision), onState func(error)) {
	const minBackoff, maxBackoff = 500 * time.Millisecond, 15 * time.Second
	backoff := minBackoff
	var last time.Time
	for ctx.Err() == nil {
		// The first connection asks for a backlog so the view is not empty; reconnections ask
		// for one too and skip what was already seen (by time: a restarted picker counts seq anew).
		err := followOnce(ctx, open, namespace, model, func(d Decision) {
			if !d.Time.After(last) {
				return
			}
			last = d.Time
			backoff = minBackoff
			onDecision(d)
		}, onState)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("decision stream of %s/%s ended", namespace, model)
		}
		onState(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func followOnce(ctx context.Context, open OpenStream, namespace, model string, onDecision func(Decision), onState func(error)) error {
	body, err := open(ctx, namespace, model, 100)
	if err != nil {
		return fmt.Errorf("opening the decision stream of %s/%s: %w", namespace, model, err)
	}
	defer body.Close()
	// Closing the body is what unblocks the scanner when ctx ends.
	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()
	onState(nil)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		d, err := ParseDecision(line, model)
		if err != nil {
			return err
		}
		onDecision(d)
	}
	return sc.Err()
}
