package sim

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The shared-count histogram must expose exactly what two client_golang histograms fed
// with the same observations would.
func TestTwinHistogramMatchesClientGolang(t *testing.T) {
	twin := newTwinHistogram("a_seconds", "b_seconds", "a", "b", tpotBuckets)
	ref := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ref_seconds", Help: "r", Buckets: tpotBuckets}, []string{labelModel})
	reg := prometheus.NewRegistry()
	reg.MustRegister(twin, ref)
	obs := []struct {
		v float64
		n int
	}{{0, 15}, {0.01, 1}, {0.0100001, 2}, {0.3, 4}, {80, 1}, {81, 3}, {0.012, 1}}
	for _, o := range obs {
		twin.forModel("m").observeN(tpotBuckets, o.v, o.n)
		for i := 0; i < o.n; i++ {
			ref.WithLabelValues("m").Observe(o.v)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.Histogram{}
	for _, f := range fams {
		byName[f.GetName()] = f.GetMetric()[0].GetHistogram()
		if l := f.GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetValue() != "m" {
			t.Errorf("%s labels %v", f.GetName(), l)
		}
	}
	want := byName["ref_seconds"]
	for _, name := range []string{"a_seconds", "b_seconds"} {
		got := byName[name]
		if got.GetSampleCount() != want.GetSampleCount() || got.GetSampleSum() != want.GetSampleSum() {
			t.Errorf("%s count/sum %d/%v, want %d/%v", name, got.GetSampleCount(), got.GetSampleSum(), want.GetSampleCount(), want.GetSampleSum())
		}
		for i, b := range want.GetBucket() {
			if g := got.GetBucket()[i]; g.GetUpperBound() != b.GetUpperBound() || g.GetCumulativeCount() != b.GetCumulativeCount() {
				t.Errorf("%s bucket %v: %d, want %d", name, b.GetUpperBound(), g.GetCumulativeCount(), b.GetCumulativeCount())
			}
		}
	}
}
