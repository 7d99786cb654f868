package sim

import "strings"

// sentenceBank is the simulator's own filler text for random mode. Its content is irrelevant
// to clients; what matters is that it tokenises into ordinary words and punctuation.
var sentenceBank = []string{
	"The simulator answers every request with text drawn from a small bank of sentences.",
	"Latency is modelled per token, so streamed answers arrive at a realistic pace.",
	"A gateway in front of several replicas should route similar prompts to the same pod.",
	"Prefix caching saves the work of recomputing attention over a shared system prompt.",
	"When every slot is busy, new requests wait in a queue until a running one finishes.",
	"Autoscalers watch the queue length and add replicas when it stays high for a while.",
	"Each replica reports its running and waiting requests through Prometheus metrics.",
	"Nothing here runs on a GPU, yet the numbers look like those of a loaded accelerator.",
	"Short answers finish with a stop reason, while long ones are cut off by the token limit.",
	"Operators can inject failures to see how clients and routers deal with errors.",
	"The quick brown fox jumps over the lazy dog, and then it rests for a moment.",
	"Tokens are words or single punctuation marks, each keeping the spaces that follow it.",
}

// tokenBank is the sentence bank cut into tokens, read as a ring so that any start offset
// yields any number of tokens without allocation.
var tokenBank = splitTokens(nil, strings.Join(sentenceBank, " ")+" ")

// bankTokens appends n consecutive bank tokens starting at offset start.
func bankTokens(dst []string, start, n int) []string {
	for i := 0; i < n; i++ {
		dst = append(dst, tokenBank[(start+i)%len(tokenBank)])
	}
	return dst
}

// responseLength draws the number of tokens to generate in random mode (facts §1.11). With a
// limit, the length comes from a six-bucket histogram whose last bucket ends at the limit;
// without one, from Normal(40, 20) bounded by the context left in the window.
func responseLength(r *lockedRand, maxTokens int, haveMax, ignoreEOS bool, remainingContext int) int {
	if haveMax {
		if ignoreEOS || maxTokens <= 1 {
			return max(maxTokens, 1)
		}
		return lengthFromBuckets(r, maxTokens)
	}
	limit := max(remainingContext, 1)
	if limit < 20 {
		return 1 + r.IntN(limit)
	}
	n := int(r.NormFloat64()*20 + 40)
	return min(max(n, 1), limit)
}

// bucketWeights are the percentages of the six length buckets.
var bucketWeights = [6]int{20, 30, 20, 5, 10, 15}

func lengthFromBuckets(r *lockedRand, maxTokens int) int {
	roll := r.IntN(100)
	bucket := 0
	for acc := 0; bucket < len(bucketWeights)-1; bucket++ {
		acc += bucketWeights[bucket]
		if roll < acc {
			break
		}
	}
	var lo, hi int // inclusive bounds
	if maxTokens <= 120 {
		lo = bucket*maxTokens/6 + 1
		hi = (bucket + 1) * maxTokens / 6
	} else {
		// Buckets 1-3 are the first 60 tokens, 5-6 the last 40, bucket 4 everything between.
		switch {
		case bucket < 3:
			lo, hi = bucket*20+1, (bucket+1)*20
		case bucket == 3:
			lo, hi = 61, maxTokens-40
		default:
			lo = maxTokens - 40 + (bucket-4)*20 + 1
			hi = lo + 19
		}
	}
	if hi < lo {
		hi = lo
	}
	return min(lo+r.IntN(hi-lo+1), maxTokens)
}
