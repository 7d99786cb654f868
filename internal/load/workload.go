package load

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
)

// Workload kinds.
const (
	// KindSharedPrefix is Families system prompts of PrefixChars characters, each followed by
	// one of SuffixesPerFamily questions: the traffic a prefix-cache-aware picker exists for
	// (issue #5's benchmark workload with the defaults).
	KindSharedPrefix = "shared-prefix"
	// KindRandom sends prompts of the same size that share nothing.
	KindRandom = "random"
	// KindMultiTurn replays Families conversations of Turns turns; each turn resends the whole
	// history, so consecutive turns of a conversation share a growing prefix.
	KindMultiTurn = "multi-turn"
)

// Workload describes the prompts Run sends.
type Workload struct {
	// Kind is one of KindSharedPrefix, KindRandom, KindMultiTurn.
	Kind string `json:"kind"`
	// Families is the number of distinct shared prefixes (conversations for multi-turn).
	Families int `json:"families"`
	// SuffixesPerFamily bounds the distinct questions per family; 0 makes every question new.
	SuffixesPerFamily int `json:"suffixesPerFamily,omitempty"`
	// PrefixChars is the length of each family's system prompt in characters.
	PrefixChars int `json:"prefixChars"`
	// QuestionTokens is the length of each question in words (about one token each).
	QuestionTokens int `json:"questionTokens"`
	// Turns is the length of a multi-turn conversation before it starts over.
	Turns int `json:"turns,omitempty"`
	// Seed makes the prompt sequence reproducible.
	Seed int64 `json:"seed"`
}

// DefaultWorkload is issue #5's benchmark workload: 8 families of a ~2,000-character system
// prompt plus a distinct ~20-token question.
func DefaultWorkload() Workload {
	return Workload{Kind: KindSharedPrefix, Families: 8, PrefixChars: 2000, QuestionTokens: 20, Turns: 4, Seed: 1}
}

func (w *Workload) defaults() {
	d := DefaultWorkload()
	if w.Kind == "" {
		w.Kind = d.Kind
	}
	if w.Families == 0 {
		w.Families = d.Families
	}
	if w.PrefixChars == 0 {
		w.PrefixChars = d.PrefixChars
	}
	if w.QuestionTokens == 0 {
		w.QuestionTokens = d.QuestionTokens
	}
	if w.Turns == 0 {
		w.Turns = d.Turns
	}
}

func (w Workload) validate() error {
	switch w.Kind {
	case KindSharedPrefix, KindRandom, KindMultiTurn:
	default:
		return fmt.Errorf("unknown workload %q: use %s, %s or %s", w.Kind, KindSharedPrefix, KindRandom, KindMultiTurn)
	}
	switch {
	case w.Families < 1 || w.Families > 10_000:
		return fmt.Errorf("families = %d: want 1..10000", w.Families)
	case w.SuffixesPerFamily < 0:
		return fmt.Errorf("suffixes per family = %d: want ≥ 0", w.SuffixesPerFamily)
	case w.PrefixChars < 0 || w.PrefixChars > 1<<20:
		return fmt.Errorf("prefix chars = %d: want 0..1048576", w.PrefixChars)
	case w.QuestionTokens < 1 || w.QuestionTokens > 100_000:
		return fmt.Errorf("question tokens = %d: want 1..100000", w.QuestionTokens)
	case w.Kind == KindMultiTurn && (w.Turns < 1 || w.Turns > 1000):
		return fmt.Errorf("turns = %d: want 1..1000", w.Turns)
	}
	return nil
}

// message is one chat message of a generated request.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// words are the vocabulary of generated text: common English words are one token each in
// real tokenizers and in the simulator's.
var words = strings.Fields(`river stone cloud maple copper lantern violet harbor summit meadow falcon ember
quartz willow canyon orbit garden silver window market travel winter signal bridge forest planet
engine paper rocket island mirror thunder castle pencil basket valley ocean desert candle`)

// generator produces the messages of each request; safe for concurrent use.
type generator struct {
	w        Workload
	prefixes []string
	mu       sync.Mutex
	rng      *rand.Rand
	// turns counts the requests sent per multi-turn conversation.
	turns []atomic.Int64
}

func newGenerator(w Workload) *generator {
	g := &generator{w: w, rng: rand.New(rand.NewPCG(uint64(w.Seed), 0x5eed))}
	prng := rand.New(rand.NewPCG(uint64(w.Seed), 0x9e3779b9))
	for i := range w.Families {
		g.prefixes = append(g.prefixes, text(prng, fmt.Sprintf("System prompt of family %d. ", i), w.PrefixChars))
	}
	g.turns = make([]atomic.Int64, w.Families)
	return g
}

// text is head followed by random words up to n characters.
func text(r *rand.Rand, head string, n int) string {
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}

// question is a question of n words whose leading number makes it distinct.
func question(r *rand.Rand, id uint64, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Question %d:", id)
	for range n - 1 {
		b.WriteByte(' ')
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// next returns the messages of the next request.
func (g *generator) next() []message {
	g.mu.Lock()
	family := g.rng.IntN(g.w.Families)
	id := g.rng.Uint64() % 1_000_000_000
	seed := g.rng.Uint64()
	g.mu.Unlock()
	r := rand.New(rand.NewPCG(seed, 1))
	switch g.w.Kind {
	case KindRandom:
		return []message{
			{Role: "system", Content: text(r, fmt.Sprintf("Unrelated context %d. ", id), g.w.PrefixChars)},
			{Role: "user", Content: question(r, id, g.w.QuestionTokens)},
		}
	case KindMultiTurn:
		return g.conversation(family)
	}
	if g.w.SuffixesPerFamily > 0 {
		// A bounded question set repeats exactly, so the question is derived from its index.
		id = id % uint64(g.w.SuffixesPerFamily)
		r = rand.New(rand.NewPCG(uint64(family), id))
	}
	return []message{
		{Role: "system", Content: g.prefixes[family]},
		{Role: "user", Content: question(r, id, g.w.QuestionTokens)},
	}
}

// conversation returns the next turn of conversation c: its system prompt, the earlier turns
// and a new question. Earlier answers are synthetic (derived from the turn) rather than the
// model's, so each turn's history is byte-identical to what the previous turn sent.
func (g *generator) conversation(c int) []message {
	n := g.turns[c].Add(1) - 1
	round, turn := n/int64(g.w.Turns), int(n%int64(g.w.Turns))
	msgs := []message{{Role: "system", Content: g.prefixes[c]}}
	for i := 0; i <= turn; i++ {
		r := rand.New(rand.NewPCG(uint64(c)<<32|uint64(round), uint64(i)))
		msgs = append(msgs, message{Role: "user", Content: question(r, uint64(round)*1000+uint64(i), g.w.QuestionTokens)})
		if i < turn {
			msgs = append(msgs, message{Role: "assistant", Content: text(r, "Answer. ", 8*g.w.QuestionTokens)})
		}
	}
	return msgs
}
