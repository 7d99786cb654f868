package prefix

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

func TestHashesChainFromTheModelRoot(t *testing.T) {
	prompt := []byte(strings.Repeat("a", 8) + strings.Repeat("b", 8) + "tail")
	got := Hashes(nil, "m", "", prompt, 8, 256)
	if len(got) != 2 {
		t.Fatalf("%d hashes for two full blocks and a partial one", len(got))
	}
	// Recompute by the documented rule, independently of the implementation's digest reuse.
	chain := func(prev uint64, block string) uint64 {
		b := append([]byte(block), make([]byte, 8)...)
		binary.LittleEndian.PutUint64(b[len(block):], prev)
		return xxhash.Sum64(b)
	}
	h0 := chain(xxhash.Sum64String("m"), "aaaaaaaa")
	if got[0] != h0 || got[1] != chain(h0, "bbbbbbbb") {
		t.Errorf("hashes %x do not follow xxhash64(block ++ LE(prev)) from xxhash64(model)", got)
	}
}

func TestHashesDependOnModelSaltAndPrefix(t *testing.T) {
	p := []byte(strings.Repeat("x", 64))
	base := Hashes(nil, "m1", "", p, 16, 256)
	if other := Hashes(nil, "m2", "", p, 16, 256); other[0] == base[0] {
		t.Error("different models share block hashes")
	}
	if salted := Hashes(nil, "m1", "s", p, 16, 256); salted[0] == base[0] {
		t.Error("cache_salt does not change the root")
	}
	q := []byte("y" + strings.Repeat("x", 63))
	if diff := Hashes(nil, "m1", "", q, 16, 256); diff[3] == base[3] {
		t.Error("a change in block 0 did not change the last block's hash")
	}
	if n := len(Hashes(nil, "m", "", []byte("short"), 16, 256)); n != 0 {
		t.Errorf("a prompt shorter than a block produced %d hashes", n)
	}
	if n := len(Hashes(nil, "m", "", []byte(strings.Repeat("z", 1600)), 16, 10)); n != 10 {
		t.Errorf("maxBlocks 10 gave %d hashes", n)
	}
}

func endpoint(addr string) *datastore.Endpoint {
	return datastore.NewEndpoint(datastore.Spec{Address: addr})
}

func TestIndexMatchesLeadingBlocksOnly(t *testing.T) {
	x := NewIndex()
	a, b := endpoint("10.0.0.1:5000"), endpoint("10.0.0.2:5000")
	x.Add(a, []uint64{1, 2, 3, 4}, 100)
	x.Add(b, []uint64{1, 2, 9}, 100)
	m := make([]int, 2)
	x.Match([]uint64{1, 2, 3, 4, 5}, []*datastore.Endpoint{a, b}, m)
	if m[0] != 4 || m[1] != 2 {
		t.Errorf("matched %v, want [4 2]", m)
	}
	// The walk stops at the first block nobody holds, even if later ones are known.
	m = make([]int, 2)
	x.Match([]uint64{7, 2, 3}, []*datastore.Endpoint{a, b}, m)
	if m[0] != 0 || m[1] != 0 {
		t.Errorf("matched %v after an unknown first block", m)
	}
}

func TestIndexEvictsLeastRecentlyUsedAndKeepsRoots(t *testing.T) {
	x := NewIndex()
	a := endpoint("10.0.0.1:5000")
	x.Add(a, []uint64{1, 2, 3}, 4)
	x.Add(a, []uint64{10, 11, 12}, 4) // two of the first prompt's blocks must go
	if x.Len(a) != 4 || x.Size() != 4 {
		t.Fatalf("len %d size %d, want capacity 4", x.Len(a), x.Size())
	}
	m := make([]int, 1)
	x.Match([]uint64{10, 11, 12}, []*datastore.Endpoint{a}, m)
	if m[0] != 3 {
		t.Errorf("newest prompt matched %d blocks, want 3", m[0])
	}
	// Within a prompt the root block is the most recently used, so it survived.
	m[0] = 0
	x.Match([]uint64{1, 2, 3}, []*datastore.Endpoint{a}, m)
	if m[0] != 1 {
		t.Errorf("older prompt matched %d blocks, want its root block only", m[0])
	}
	// Evicted entries are gone from the reverse map too.
	if _, ok := x.byHash[3]; ok {
		t.Error("evicted hash still in the reverse map")
	}
	// Shrinking the capacity (an engine reporting fewer blocks) evicts at once.
	x.Add(a, []uint64{10}, 2)
	if x.Len(a) != 2 || x.Size() != 2 {
		t.Errorf("after resize len %d size %d, want 2", x.Len(a), x.Size())
	}
}

func TestIndexForgetsEndpoints(t *testing.T) {
	x := NewIndex()
	a, b := endpoint("10.0.0.1:5000"), endpoint("10.0.0.2:5000")
	x.Add(a, []uint64{1, 2}, 10)
	x.Add(b, []uint64{1, 2}, 10)
	x.Forget(a)
	m := make([]int, 2)
	x.Match([]uint64{1, 2}, []*datastore.Endpoint{a, b}, m)
	if m[0] != 0 || m[1] != 2 || x.Size() != 2 {
		t.Errorf("after forgetting a: matched %v size %d", m, x.Size())
	}
	// A new endpoint reuses the freed id without inheriting anything.
	c := endpoint("10.0.0.3:5000")
	x.Add(c, []uint64{5}, 10)
	m = make([]int, 3)
	x.Match([]uint64{1, 2}, []*datastore.Endpoint{a, b, c}, m)
	if m[0] != 0 || m[1] != 2 || m[2] != 0 {
		t.Errorf("after reuse: matched %v", m)
	}
}

func newScorer(t *testing.T, params string, store *datastore.Store) *Scorer {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	p, err := New("prefix", raw, scheduling.Handle{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Scorer)
}

func TestScorerLearnsFromItsDecisionsAndForgetsRemovedEndpoints(t *testing.T) {
	store := datastore.NewStore()
	store.Replace([]datastore.Spec{{Address: "10.0.0.1:5000"}, {Address: "10.0.0.2:5000"}})
	s := newScorer(t, `{"blockSizeTokens": 4, "autoTune": false}`, store)
	eps := store.Endpoints()
	req := &scheduling.Request{TargetModel: "m", Prompt: []byte(strings.Repeat("p", 16*5) + "question")}

	run := func(pick *datastore.Endpoint) ([]float64, scheduling.PrefixSummary) {
		cs := &scheduling.CycleState{}
		out := make([]float64, len(eps))
		s.Score(context.Background(), cs, req, eps, out)
		s.PreRequest(context.Background(), cs, req, &scheduling.Result{Targets: []*datastore.Endpoint{pick}, Candidates: eps})
		return out, cs.Prefix
	}
	out, sum := run(eps[1])
	if out[0] != 0 || out[1] != 0 || sum.MatchedBlocks != 0 || sum.TotalBlocks != 5 {
		t.Fatalf("first request: scores %v summary %+v", out, sum)
	}
	out, sum = run(eps[1])
	if out[0] != 0 || out[1] != 1 || sum.MatchedBlocks != 5 || sum.BlockSize != 16 {
		t.Fatalf("second request: scores %v summary %+v; want endpoint 2 to hold all 5 blocks", out, sum)
	}
	store.Replace([]datastore.Spec{{Address: "10.0.0.1:5000"}})
	if n := s.Index().Size(); n != 0 {
		t.Errorf("index holds %d entries after its endpoint left the pool", n)
	}
}

func TestAutoTuneUsesEngineBlockSizeAndCapacity(t *testing.T) {
	s := newScorer(t, "", nil)
	e := endpoint("10.0.0.1:5000")
	e.SetMetrics(&datastore.Metrics{CacheBlockSize: 8, CacheNumBlocks: 3})
	req := &scheduling.Request{TargetModel: "m", Prompt: []byte(strings.Repeat("q", 32*10))}
	cs := &scheduling.CycleState{}
	s.Score(context.Background(), cs, req, []*datastore.Endpoint{e}, make([]float64, 1))
	s.PreRequest(context.Background(), cs, req, &scheduling.Result{Targets: []*datastore.Endpoint{e}})
	if cs.Prefix.BlockSize != 32 || cs.Prefix.TotalBlocks != 10 {
		t.Errorf("summary %+v, want 32-char blocks (8 tokens × 4)", cs.Prefix)
	}
	if n := s.Index().Len(e); n != 3 {
		t.Errorf("index holds %d blocks for an engine with 3 GPU blocks", n)
	}
}

func TestScorerParameterErrors(t *testing.T) {
	for _, raw := range []string{`{"blockSize": 64}`, `{"blockSizeTokens": -1}`, `{"lruCapacityPerServer": -5}`, `{"hashblocksize": 4, "x": 1}`} {
		if _, err := New("p", json.RawMessage(raw), scheduling.Handle{}); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}
