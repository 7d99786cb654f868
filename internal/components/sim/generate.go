package sim

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// sink receives the output of sub-requests. Calls for one choice are ordered; calls for
// different choices may come from different goroutines.
type sink interface {
	token(choice int, tok string) error
	// toolDelta streams part of a tool call; finish is set on the choice's last delta.
	toolDelta(choice int, delta openai.ToolCall, finish *string) error
	finish(choice int, reason string, generated int) error
}

// subResult is what one sub-request produced.
type subResult struct {
	promptTokens, cachedTokens, generated int
	finishReason                          string
	tokens                                []string          // kept for non-streaming responses
	toolCalls                             []openai.ToolCall // instead of tokens, for tool calls
}

// sleep waits d or until ctx ends. The timer is reused across a request's tokens.
func sleep(ctx context.Context, t **time.Timer, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return nil
	case <-ctx.Done():
		(*t).Stop()
		return ctx.Err()
	}
}

// outputTokens decides what a sub-request generates (facts §1.11).
func (s *Server) outputTokens(j *job, p *prompt, dst []string) ([]string, string) {
	if j.remoteDecode {
		// A prefill pod in P/D produces one token and hands the KV cache over.
		return bankTokens(dst, s.rand.IntN(len(tokenBank)), 1), openai.FinishRemoteDecode
	}
	if s.cfg.Mode == ModeEcho {
		return splitTokens(dst, p.echo), openai.FinishStop
	}
	n := responseLength(s.rand, j.maxTokens, j.maxTokens >= 0, j.ignoreEOS, s.cfg.MaxModelLen-p.numTokens)
	reason := openai.FinishStop
	if j.maxTokens >= 0 && n >= j.maxTokens {
		reason = openai.FinishLength
	}
	return bankTokens(dst, s.rand.IntN(len(tokenBank)), n), reason
}

// runSub runs one sub-request: wait for a slot, pin KV blocks, simulate prefill and decode
// while emitting tokens, then free everything. Cancellation of ctx (client gone) frees the
// slot and the blocks at once.
func (s *Server) runSub(ctx context.Context, j *job, promptIdx, choice int, out sink, res *subResult) error {
	p := &j.prompts[promptIdx]
	arrived := time.Now()
	queued, err := s.sched.acquire(ctx)
	if err != nil {
		if errors.Is(err, errQueueFull) {
			return errQueueFullAPI
		}
		return err
	}
	defer s.sched.release()
	mm := s.metrics.forModelFast(j.model)
	res.promptTokens = p.numTokens

	if s.kv != nil {
		lease, hits, err := s.kv.Start(p.blocks)
		if err != nil {
			return errKVCapacity
		}
		defer s.kv.Finish(lease)
		res.cachedTokens = hits * s.cfg.BlockSize
		mm.prefixQueries.Add(float64(p.numTokens))
		mm.prefixHits.Add(float64(res.cachedTokens))
	}

	stats := subRequestStats{promptTokens: p.numTokens, cachedTokens: res.cachedTokens, maxTokens: j.maxTokens, queue: queued}
	if j.maxTokens < 0 {
		stats.maxTokens = max(s.cfg.MaxModelLen-p.numTokens, 0)
	}
	if s.belowCacheThreshold(j, p, res.cachedTokens) {
		// Upstream answers at once, without latency or tokens.
		res.finishReason = openai.FinishCacheThreshold
		stats.finishReason = res.finishReason
		stats.e2e = time.Since(arrived)
		mm.record(&stats)
		return out.finish(choice, res.finishReason, 0)
	}

	var dst []string
	if j.subRequests() == 1 && j.maxTokens <= len(j.tokenBuf) {
		dst = j.tokenBuf[:0]
	} else {
		dst = make([]string, 0, max(j.maxTokens, 16))
	}
	toks, reason := s.outputTokens(j, p, dst)
	res.tokens, res.finishReason, res.generated = toks, reason, len(toks)
	// A tool call is emitted as one step per call (its header) plus one per argument token.
	steps := len(toks)
	emit := func(i int) error { return out.token(choice, toks[i]) }
	if calls, argTokens := s.toolCalls(j); len(calls) > 0 {
		res.tokens, res.toolCalls, res.finishReason = nil, calls, openai.FinishToolCalls
		res.generated = toolCallTokens(argTokens)
		steps = len(calls)
		for _, a := range argTokens {
			steps += len(a)
		}
		emit = toolEmitter(out, choice, calls, argTokens, steps)
	}
	stats.finishReason, stats.generatedTokens = res.finishReason, res.generated

	var timer *time.Timer
	lat := s.lat.Load() // one latency configuration for the whole sub-request
	zeroLatency := lat.isZero()
	// Timestamps are derived where possible: clock reads are a measurable share of a
	// zero-latency request.
	runStart := arrived.Add(queued)
	decodeStart := runStart
	ttft := time.Duration(0)
	if !zeroLatency {
		ttft = lat.timeToFirstToken(s.sched.load(), p.numTokens, res.cachedTokens, j.remotePrefill)
		if err := sleep(ctx, &timer, ttft); err != nil {
			return err
		}
		decodeStart = time.Now()
	}
	stats.simulatedTTFT = ttft
	stats.prefill = decodeStart.Sub(runStart)
	for i := 0; i < steps; i++ {
		if i > 0 {
			itl := time.Duration(0)
			if !zeroLatency {
				itl = lat.interTokenLatency(s.sched.load())
				if err := sleep(ctx, &timer, itl); err != nil {
					return err
				}
			}
			if !zeroLatency {
				mm.observeInterToken(itl, 1)
			}
			stats.itlSum += itl
			stats.itlCount++
		}
		if err := emit(i); err != nil {
			return err
		}
	}
	if zeroLatency {
		mm.observeInterToken(0, stats.itlCount)
	}
	end := time.Now()
	stats.decode = end.Sub(decodeStart)
	stats.e2e = end.Sub(arrived)
	mm.record(&stats)
	return out.finish(choice, res.finishReason, res.generated)
}

// toolEmitter maps step numbers to tool-call deltas: a call's first step carries its id,
// type and name, the following ones its argument fragments; the last step carries the
// finish reason, as upstream attaches it to the final tool chunk.
func toolEmitter(out sink, choice int, calls []openai.ToolCall, argTokens [][]string, steps int) func(int) error {
	finish := openai.FinishToolCalls
	call, next := 0, 0 // next: index into the current call's argument tokens, -1 before its header
	next = -1
	return func(step int) error {
		var delta openai.ToolCall
		if next < 0 {
			delta = openai.ToolCall{Index: calls[call].Index, ID: calls[call].ID, Type: calls[call].Type,
				Function: openai.FunctionCall{Name: calls[call].Function.Name}}
		} else {
			delta = openai.ToolCall{Index: calls[call].Index, Function: openai.FunctionCall{Arguments: argTokens[call][next]}}
		}
		if next++; next >= len(argTokens[call]) {
			call, next = call+1, -1
		}
		var f *string
		if step == steps-1 {
			f = &finish
		}
		return out.toolDelta(choice, delta, f)
	}
}

func (s *Server) belowCacheThreshold(j *job, p *prompt, cached int) bool {
	if j.forceCacheMiss {
		return true
	}
	threshold := j.cacheHitMin
	if threshold < 0 {
		threshold = s.cfg.GlobalCacheHitThreshold
		if threshold <= 0 {
			return false
		}
	}
	if p.numTokens == 0 {
		return false
	}
	return float64(cached)/float64(p.numTokens) < threshold
}

// runJob runs every sub-request of j, in the caller's goroutine when there is only one.
// The first error cancels the others.
func (s *Server) runJob(ctx context.Context, j *job, out sink) ([]subResult, error) {
	results := j.oneResult[:]
	if j.subRequests() > 1 {
		results = make([]subResult, j.subRequests())
	}
	if len(results) == 1 {
		return results, s.runSub(ctx, j, 0, 0, out, &results[0])
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for pi := range j.prompts {
		for c := 0; c < j.n; c++ {
			idx := pi*j.n + c
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.runSub(ctx, j, pi, idx, out, &results[idx]); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}()
		}
	}
	wg.Wait()
	return results, firstErr
}

// usage aggregates the sub-results: prompt tokens count once per prompt, completion tokens
// once per choice.
func (j *job) usage(results []subResult) openai.Usage {
	j.details = openai.PromptTokensDetails{}
	u := openai.Usage{PromptTokensDetails: &j.details}
	for i := range results {
		r := &results[i]
		if i%j.n == 0 {
			u.PromptTokens += int64(j.prompts[i/j.n].numTokens)
			u.PromptTokensDetails.CachedTokens += int64(r.cachedTokens)
		}
		u.CompletionTokens += int64(r.generated)
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

func joinTokens(toks []string) string {
	n := 0
	for _, t := range toks {
		n += len(t)
	}
	var b strings.Builder
	b.Grow(n)
	for _, t := range toks {
		b.WriteString(t)
	}
	return b.String()
}
