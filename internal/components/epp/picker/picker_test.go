package picker

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

func endpoints(n int) []*datastore.Endpoint {
	out := make([]*datastore.Endpoint, n)
	for i := range out {
		out[i] = datastore.NewEndpoint(datastore.Spec{Address: fmt.Sprintf("10.0.0.%d:5000", i)})
	}
	return out
}

func build(t *testing.T, f scheduling.Factory, params string) scheduling.Picker {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	p, err := f("p", raw, scheduling.Handle{})
	if err != nil {
		t.Fatal(err)
	}
	return p.(scheduling.Picker)
}

func TestMaxScorePicksTheBest(t *testing.T) {
	eps := endpoints(4)
	p := build(t, NewMaxScore, "")
	for range 100 {
		got := p.Pick(nil, eps, []float64{0.1, 2.5, 2.4, 0})
		if len(got) != 1 || got[0] != eps[1] {
			t.Fatalf("picked %v, want %s", got, eps[1].Address)
		}
	}
}

func TestMaxScoreBreaksTiesUniformly(t *testing.T) {
	eps := endpoints(4)
	p := build(t, NewMaxScore, "")
	counts := map[*datastore.Endpoint]int{}
	const n = 6000
	for range n {
		counts[p.Pick(nil, eps, []float64{3, 1, 3, 3})[0]]++
	}
	if counts[eps[1]] != 0 {
		t.Errorf("lower-scored endpoint picked %d times", counts[eps[1]])
	}
	// Each of the three tied endpoints expects 2000; 1700 is over 8 standard deviations away.
	for _, i := range []int{0, 2, 3} {
		if counts[eps[i]] < 1700 {
			t.Errorf("tied endpoint %d picked %d of %d times; ties are not broken uniformly", i, counts[eps[i]], n)
		}
	}
}

func TestMaxScoreReturnsTopNInOrder(t *testing.T) {
	eps := endpoints(4)
	p := build(t, NewMaxScore, `{"maxNumOfEndpoints": 3}`)
	got := p.Pick(nil, eps, []float64{0.2, 0.9, 0.5, 0.1})
	if len(got) != 3 || got[0] != eps[1] || got[1] != eps[2] || got[2] != eps[0] {
		t.Errorf("got %v", got)
	}
}

func TestRandomIgnoresScores(t *testing.T) {
	eps := endpoints(2)
	p := build(t, NewRandom, "")
	counts := [2]int{}
	for range 4000 {
		if p.Pick(nil, eps, []float64{100, 0})[0] == eps[0] {
			counts[0]++
		} else {
			counts[1]++
		}
	}
	if counts[1] < 1700 {
		t.Errorf("random picker chose the zero-scored endpoint %d of 4000 times", counts[1])
	}
	if got := build(t, NewRandom, `{"maxNumOfEndpoints": 5}`).Pick(nil, eps, nil); len(got) != 2 || got[0] == got[1] {
		t.Errorf("random top-N = %v, want both endpoints once", got)
	}
}

func TestWeightedRandomFollowsWeights(t *testing.T) {
	eps := endpoints(3)
	p := build(t, NewWeightedRandom, "")
	counts := map[*datastore.Endpoint]int{}
	for range 6000 {
		counts[p.Pick(nil, eps, []float64{3, 1, 0})[0]]++
	}
	if counts[eps[2]] != 0 {
		t.Errorf("zero-weight endpoint picked %d times", counts[eps[2]])
	}
	if r := float64(counts[eps[0]]) / float64(counts[eps[1]]); r < 2.4 || r > 3.8 {
		t.Errorf("weight-3 vs weight-1 pick ratio %.2f, want about 3", r)
	}
}

func TestBadParameters(t *testing.T) {
	for _, raw := range []string{`{"maxNumOfEndpoints": 0}`, `{"maxNumOfEndpoint": 2}`} {
		if _, err := NewMaxScore("p", json.RawMessage(raw), scheduling.Handle{}); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}
