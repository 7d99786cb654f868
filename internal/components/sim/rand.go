package sim

import (
	"math/rand/v2"
	"sync"
)

// lockedRand is one seeded source for the whole simulator, so --seed makes a single-client
// run reproducible like upstream's; the lock is uncontended enough at the request rates a
// 2-core pod sees.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed int64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))}
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	v := l.r.IntN(n)
	l.mu.Unlock()
	return v
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	v := l.r.Float64()
	l.mu.Unlock()
	return v
}

func (l *lockedRand) NormFloat64() float64 {
	l.mu.Lock()
	v := l.r.NormFloat64()
	l.mu.Unlock()
	return v
}

// uuid returns a random version-4 UUID string.
func (l *lockedRand) uuid() string {
	l.mu.Lock()
	hi, lo := l.r.Uint64(), l.r.Uint64()
	l.mu.Unlock()
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigit[c>>4], hexDigit[c&0xf]
		j += 2
	}
	return string(out[:])
}

const hexDigit = "0123456789abcdef"
