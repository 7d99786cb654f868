package decision

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

func TestRingKeepsTheNewestInOrder(t *testing.T) {
	g := NewRing(3)
	for i := range 5 {
		g.Add(&Record{RequestID: fmt.Sprint(i)})
	}
	got := g.Recent(10)
	if len(got) != 3 || got[0].seq != 2 || got[2].rec.RequestID != "4" {
		t.Errorf("recent = %+v", got)
	}
	if n := len(g.Recent(2)); n != 2 {
		t.Errorf("limit 2 gave %d", n)
	}
}

func TestRecordJSON(t *testing.T) {
	a := datastore.NewEndpoint(datastore.Spec{Name: "pod-a-rank-0", Address: "10.0.0.1:8000"})
	b := datastore.NewEndpoint(datastore.Spec{Name: "pod-b-rank-0", Address: "10.0.0.2:8000"})
	a.SetMetrics(&datastore.Metrics{WaitingQueueSize: 2, KVCacheUsagePercent: 0.5})
	res := &scheduling.Result{
		Targets: []*datastore.Endpoint{a, b}, Candidates: []*datastore.Endpoint{a, b}, Totals: []float64{4, 1},
		Scores: []scheduling.ScorerScores{{Name: "prefix", Type: "prefix-cache-scorer", Weight: 3, Values: []float64{1, 0}}},
	}
	res.State.Prefix = scheduling.PrefixSummary{Valid: true, MatchedBlocks: 3, TotalBlocks: 4, BlockSize: 64}
	raw, err := json.Marshal(entry{seq: 7, rec: &Record{Time: time.Unix(0, 0), RequestID: "r", Model: "m", Status: "success",
		Endpoint: a.Address, Name: a.Name, Duration: 1500 * time.Nanosecond, Result: res}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Seq        uint64
		RequestID  string  `json:"requestId"`
		Micros     float64 `json:"schedulingMicros"`
		Fallbacks  []string
		Weights    map[string]float64
		Candidates []struct {
			Endpoint string
			Total    float64
			Scores   map[string]float64
			Queue    int `json:"waitingQueue"`
		}
		Prefix struct {
			MatchedChars int
			HitRatio     float64
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 7 || got.RequestID != "r" || got.Micros != 1.5 || len(got.Fallbacks) != 1 || got.Weights["prefix"] != 3 {
		t.Errorf("%s", raw)
	}
	if len(got.Candidates) != 2 || got.Candidates[0].Scores["prefix"] != 1 || got.Candidates[0].Queue != 2 || got.Candidates[1].Total != 1 {
		t.Errorf("candidates %s", raw)
	}
	if got.Prefix.MatchedChars != 192 || got.Prefix.HitRatio != 0.75 {
		t.Errorf("prefix %s", raw)
	}
}
