package load

import (
	"bytes"
	"strings"
	"testing"
)

func TestReportNamesOtherTraffic(t *testing.T) {
	for _, tc := range []struct {
		succeeded int
		pods      []float64
		note      bool
	}{
		{succeeded: 0, pods: []float64{4}, note: true},
		{succeeded: 100, pods: []float64{60, 60}, note: true},
		{succeeded: 100, pods: []float64{51, 50}, note: false}, // a request finishing at the window's edge
		{succeeded: 10, pods: []float64{5, 5}, note: false},
	} {
		r := &Report{Succeeded: tc.succeeded, StatusCodes: map[string]int{}}
		for i, n := range tc.pods {
			r.Pods = append(r.Pods, PodShare{Pod: "p" + string(rune('0'+i)), Requests: n})
		}
		var buf bytes.Buffer
		if err := r.WriteTable(&buf); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "other traffic reached them"); got != tc.note {
			t.Errorf("%d ok, pods %v: note %v, want %v\n%s", tc.succeeded, tc.pods, got, tc.note, &buf)
		}
	}
}
