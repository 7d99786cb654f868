// Package kvcache simulates vLLM's paged KV cache with prefix caching: prompts are cut into
// blocks of token ids, blocks are named by chained hashes so equal prefixes share blocks, and
// blocks no running request holds stay cached until evicted, oldest first
// (shared/facts/llm-d-facts.md §1.13).
package kvcache

// Block hashes follow llm-d's default "cbor-fnv" scheme so that, like the upstream
// simulator, a block here has the same name an llm-d indexer would give it: every hash is
// FNV-1a-64 over the canonical CBOR encoding of a three-element array. The encoding is
// written straight into the hash state, which keeps hashing allocation-free.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

type fnv64 uint64

func (h *fnv64) byte(b byte) {
	*h ^= fnv64(b)
	*h *= fnvPrime64
}

func (h *fnv64) bytes(s string) {
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

// head writes a CBOR initial byte plus argument in its shortest (canonical) form.
func (h *fnv64) head(major byte, v uint64) {
	m := major << 5
	switch {
	case v < 24:
		h.byte(m | byte(v))
	case v <= 0xff:
		h.byte(m | 24)
		h.byte(byte(v))
	case v <= 0xffff:
		h.byte(m | 25)
		h.byte(byte(v >> 8))
		h.byte(byte(v))
	case v <= 0xffffffff:
		h.byte(m | 26)
		for s := 24; s >= 0; s -= 8 {
			h.byte(byte(v >> s))
		}
	default:
		h.byte(m | 27)
		for s := 56; s >= 0; s -= 8 {
			h.byte(byte(v >> s))
		}
	}
}

const (
	cborUint  = 0
	cborText  = 3
	cborArray = 4
	cborNull  = 0xf6
)

// RootHash is the parent of a prompt's first block: FNV-64a of the seed string, then of
// CBOR [seed, null, model], so different models (and LoRAs) never share blocks.
func RootHash(hashSeed, model string) uint64 {
	seed := fnv64(fnvOffset64)
	seed.bytes(hashSeed)
	h := fnv64(fnvOffset64)
	h.head(cborArray, 3)
	h.head(cborUint, uint64(seed))
	h.byte(cborNull)
	h.head(cborText, uint64(len(model)))
	h.bytes(model)
	return uint64(h)
}

// BlockHash is FNV-64a of CBOR [parent, tokens, null].
func BlockHash(parent uint64, tokens []uint32) uint64 {
	h := fnv64(fnvOffset64)
	h.head(cborArray, 3)
	h.head(cborUint, parent)
	h.head(cborArray, uint64(len(tokens)))
	for _, t := range tokens {
		h.head(cborUint, uint64(t))
	}
	h.byte(cborNull)
	return uint64(h)
}

// AppendBlockHashes appends the chained hashes of every full block of tokens; a trailing
// partial block is not cached, as in vLLM.
func AppendBlockHashes(dst []uint64, root uint64, tokens []uint32, blockSize int) []uint64 {
	parent := root
	for i := 0; i+blockSize <= len(tokens); i += blockSize {
		parent = BlockHash(parent, tokens[i:i+blockSize])
		dst = append(dst, parent)
	}
	return dst
}
