package load

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles compares the bucketed quantiles with exact nearest-rank quantiles of
// the same samples, over distributions from microseconds to minutes.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"exponential-50ms": func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(50*time.Millisecond)) },
		"lognormal":        func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*2+13) + 1) },
		"uniform-µs":       func() time.Duration { return time.Duration(rng.IntN(2000)) * time.Microsecond },
		"bimodal":          func() time.Duration { return []time.Duration{5 * time.Millisecond, 7 * time.Second}[rng.IntN(2)] },
	}
	for name, draw := range dists {
		var h Histogram
		var all []time.Duration
		for range 20_000 {
			d := draw()
			h.Record(d)
			all = append(all, d)
		}
		slices.Sort(all)
		for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
			exact := all[max(int(math.Ceil(q*float64(len(all))))-1, 0)]
			got := h.Quantile(q)
			if rel := math.Abs(float64(got-exact)) / math.Max(float64(exact), 1); rel > 0.008 {
				t.Errorf("%s q%.3f: %s, exact %s (%.2f%% off)", name, q, got, exact, 100*rel)
			}
		}
		var sum float64
		for _, d := range all {
			sum += float64(d)
		}
		if mean := time.Duration(sum / float64(len(all))); h.Mean() != mean {
			t.Errorf("%s mean %s, want %s", name, h.Mean(), mean)
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Mean() != 0 {
		t.Error("empty histogram is not zero")
	}
	h.Record(-time.Second)
	h.Record(time.Duration(math.MaxInt64))
	if h.Quantile(0) != 0 || h.Quantile(1) != time.Duration(math.MaxInt64) {
		t.Errorf("extremes: %s %s", h.Quantile(0), h.Quantile(1))
	}
	var a, b Histogram
	for i := range 100 {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(i+100) * time.Millisecond)
	}
	a.Merge(&b)
	if a.Count() != 200 || a.Quantile(0) != 0 || a.Quantile(1) != 199*time.Millisecond {
		t.Errorf("merged: n %d, min %s, max %s", a.Count(), a.Quantile(0), a.Quantile(1))
	}
	if p50 := a.Quantile(0.5); p50 < 98*time.Millisecond || p50 > 100*time.Millisecond {
		t.Errorf("merged p50 %s", p50)
	}
	a.Reset()
	if a.Count() != 0 || a.Quantile(0.9) != 0 {
		t.Error("reset left samples")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	d := 37 * time.Millisecond
	for b.Loop() {
		h.Record(d)
		d += 13 * time.Microsecond
	}
}

// TestWorkloads checks what each workload sends: shared-prefix requests reuse one of Families
// system prompts byte for byte with distinct questions; a bounded suffix set repeats; random
// prompts share nothing; multi-turn turns extend the previous turn's messages.
func TestWorkloads(t *testing.T) {
	w := DefaultWorkload()
	w.defaults()
	g := newGenerator(w)
	prefixes, questions := map[string]bool{}, map[string]bool{}
	for range 400 {
		m := g.next()
		if len(m) != 2 || m[0].Role != "system" || m[1].Role != "user" {
			t.Fatalf("shared-prefix messages: %+v", m)
		}
		prefixes[m[0].Content] = true
		questions[m[1].Content] = true
		if n := len(m[0].Content); n < w.PrefixChars || n > w.PrefixChars+20 {
			t.Errorf("prefix of %d chars, want about %d", n, w.PrefixChars)
		}
	}
	if len(prefixes) != 8 || len(questions) < 395 {
		t.Errorf("%d prefixes, %d distinct questions in 400 requests", len(prefixes), len(questions))
	}
	for q := range questions {
		if n := len(splitWords(q)); n != w.QuestionTokens+1 { // "Question" "<id>:" + 19 words
			t.Errorf("question of %d words: %q", n, q)
			break
		}
	}

	w.SuffixesPerFamily = 3
	g = newGenerator(w)
	pairs := map[string]bool{}
	for range 400 {
		m := g.next()
		pairs[m[0].Content+"|"+m[1].Content] = true
	}
	if len(pairs) != 8*3 {
		t.Errorf("%d distinct prompts with 8 families × 3 suffixes", len(pairs))
	}

	w = DefaultWorkload()
	w.Kind = KindRandom
	g = newGenerator(w)
	seen := map[string]bool{}
	for range 50 {
		m := g.next()
		head := m[0].Content[:64]
		if seen[head] {
			t.Errorf("random prompts share a beginning: %q", head)
		}
		seen[head] = true
	}

	w = DefaultWorkload()
	w.Kind, w.Families, w.Turns = KindMultiTurn, 1, 3
	g = newGenerator(w)
	var prev []message
	for i := range 6 {
		m := g.next()
		turn := i % 3
		if len(m) != 2+2*turn {
			t.Fatalf("turn %d has %d messages", turn, len(m))
		}
		if turn > 0 && !slices.Equal(m[:len(prev)], prev) {
			t.Errorf("turn %d does not resend turn %d's messages", turn, turn-1)
		}
		if turn == 0 && prev != nil && m[1] == prev[1] {
			t.Error("a new conversation repeats the last one's first question")
		}
		prev = m
	}
}

func splitWords(s string) []string {
	var out []string
	word := ""
	for _, r := range s {
		if r == ' ' {
			if word != "" {
				out = append(out, word)
			}
			word = ""
			continue
		}
		word += string(r)
	}
	if word != "" {
		out = append(out, word)
	}
	return out
}
