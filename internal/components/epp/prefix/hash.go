// Package prefix implements the approximate prefix-cache scorer: it predicts which endpoint
// holds a prompt's KV-cache blocks from the picker's own past decisions (llm-d-facts §2.10,
// GAIE v1.5 behaviour).
package prefix

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// CharsPerToken converts token block sizes into characters, as upstream does: the picker never
// tokenises, it assumes four characters per token.
const CharsPerToken = 4

// Hashes appends to dst the chained block hashes of prompt: the root is xxhash64 of the target
// model (and cache salt, if any); block i is xxhash64(block bytes ++ little-endian previous hash).
// Only full blocks count, at most maxBlocks of them. A prompt shorter than one block has no
// hashes and can never match, which is upstream's behaviour too.
func Hashes(dst []uint64, model, salt string, prompt []byte, blockChars, maxBlocks int) []uint64 {
	if blockChars <= 0 {
		return dst
	}
	n := min(len(prompt)/blockChars, maxBlocks)
	if n <= 0 {
		return dst
	}
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(model)
	_, _ = d.WriteString(salt)
	prev := d.Sum64()
	var le [8]byte
	for i := 0; i < n; i++ {
		d.Reset()
		_, _ = d.Write(prompt[i*blockChars : (i+1)*blockChars])
		binary.LittleEndian.PutUint64(le[:], prev)
		_, _ = d.Write(le[:])
		prev = d.Sum64()
		dst = append(dst, prev)
	}
	return dst
}
