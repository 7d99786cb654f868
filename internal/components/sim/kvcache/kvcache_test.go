package kvcache

import (
	"errors"
	"hash/fnv"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// The hand-rolled CBOR must equal a real canonical CBOR encoder's output, otherwise block
// names would differ from llm-d's.
func TestHashesMatchCanonicalCBOR(t *testing.T) {
	em, err := cbor.CanonicalEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	fnvOf := func(b []byte) uint64 {
		h := fnv.New64a()
		_, _ = h.Write(b)
		return h.Sum64()
	}
	seedHash := fnv.New64a()
	_, _ = seedHash.Write([]byte("42"))
	enc, err := em.Marshal([]any{seedHash.Sum64(), nil, "phi-4-mini"})
	if err != nil {
		t.Fatal(err)
	}
	root := RootHash("42", "phi-4-mini")
	if want := fnvOf(enc); root != want {
		t.Fatalf("RootHash = %x, want %x", root, want)
	}
	for _, tokens := range [][]uint32{{1, 2, 3}, {0, 23, 24, 255, 256, 65535, 65536, 4294967295}, make([]uint32, 30)} {
		enc, err := em.Marshal([]any{root, tokens, nil})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := BlockHash(root, tokens), fnvOf(enc); got != want {
			t.Fatalf("BlockHash(%v) = %x, want %x", tokens, got, want)
		}
	}
	if big := BlockHash(1<<63, []uint32{1}); big == BlockHash(1<<62, []uint32{1}) {
		t.Fatal("parent hash not part of block hash")
	}
}

func TestChainedHashesSharePrefixes(t *testing.T) {
	root := RootHash("", "m")
	a := AppendBlockHashes(nil, root, []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9}, 4)
	b := AppendBlockHashes(nil, root, []uint32{1, 2, 3, 4, 9, 9, 9, 9}, 4)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("partial blocks must not be hashed: %d %d", len(a), len(b))
	}
	if a[0] != b[0] || a[1] == b[1] {
		t.Fatalf("want shared first block only: %x %x", a, b)
	}
	if other := AppendBlockHashes(nil, RootHash("", "lora"), []uint32{1, 2, 3, 4}, 4); other[0] == a[0] {
		t.Fatal("different models share a block")
	}
}

func TestCacheHitsEvictionAndCapacity(t *testing.T) {
	var reported float64
	c := New(4, func(u float64) { reported = u })
	l1, hits, err := c.Start([]uint64{1, 2})
	if err != nil || hits != 0 {
		t.Fatalf("first start: hits=%d err=%v", hits, err)
	}
	// A concurrent request sharing block 1 hits it and pins one more.
	l2, hits, err := c.Start([]uint64{1, 3})
	if err != nil || hits != 1 {
		t.Fatalf("shared start: hits=%d err=%v", hits, err)
	}
	if got := c.Usage(); got != 0.75 || reported != 0.75 {
		t.Fatalf("usage = %v (reported %v), want 0.75", got, reported)
	}
	// 3 pinned + 2 new > 4: the request can never fit while the others run.
	if _, _, err := c.Start([]uint64{5, 6}); !errors.Is(err, ErrCapacity) {
		t.Fatalf("want ErrCapacity, got %v", err)
	}
	c.Finish(l1)
	if used, unused := c.Stats(); used != 2 || unused != 1 {
		t.Fatalf("after finish: used=%d unused=%d", used, unused)
	}
	c.Finish(l2)
	if c.Usage() != 0 || reported != 0 {
		t.Fatalf("usage after all finished = %v (reported %v)", c.Usage(), reported)
	}
	// Blocks 2, 1, 3 are resident and unused (released in that order). Two new blocks need
	// one eviction: the least recently released, block 2.
	l3, hits, err := c.Start([]uint64{7, 8})
	if err != nil || hits != 0 {
		t.Fatalf("start after release: hits=%d err=%v", hits, err)
	}
	c.Finish(l3)
	if l, hits, _ := c.Start([]uint64{1, 3}); hits != 2 {
		t.Fatalf("blocks 1 and 3 should still be cached, hits=%d", hits)
	} else {
		c.Finish(l)
	}
	if _, hits, _ := c.Start([]uint64{2}); hits != 0 {
		t.Fatal("block 2 should have been evicted first")
	}
}
