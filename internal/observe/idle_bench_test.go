package observe_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/inference-sandbox/sandbox/internal/components/epp/decision"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/observe"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
	"github.com/inference-sandbox/sandbox/internal/tui"
)

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleDashboard measures the CPU the dashboard costs on an idle sandbox of 2 models ×
// 4 pods: informers on a real kube-apiserver (a separate process, not counted), pod metrics
// scraped every 2 s from 8 real simulators on loopback, two followed decision streams (with a
// backlog of 100 decisions each), and the
// Bubble Tea program rendering every snapshot. Each iteration is one second of wall time;
// run with -benchtime=20x. cpu-%-of-core is this process's CPU over that time, minus what the
// idle simulators and servers cost on their own (measured first, reported as baseline-%).
func BenchmarkIdleDashboard(b *testing.B) {
	w := observe.StartWorld(b)
	urls := map[string]string{}
	pickers := map[string]string{}
	for i, model := range []string{"phi-4-mini", "ministral-3b"} {
		w.AddModel(b, model, 4)
		w.SetMetric(b, model, 0)
		for j := range 4 {
			name := fmt.Sprintf("%s-%d-0", model, j)
			p := stacktest.StartSim(b, model, name, int64(10*i+j+1), nil)
			urls[name] = p.URL
			w.AddPod(b, model, name, []string{"w1", "w2"}[j%2], fmt.Sprintf("10.0.%d.%d", i+1, j+1))
		}
		ring := decision.NewRing(1024)
		// The backlog a picker hands a new follower: the routing view has rows to lay out.
		for k := range 100 {
			ring.Add(&decision.Record{Time: time.Now().Add(time.Duration(k-100) * time.Second), Model: model, Status: "success",
				Endpoint: fmt.Sprintf("10.0.%d.%d:5000", i+1, k%4+1), Name: fmt.Sprintf("%s-%d-0-rank-0", model, k%4)})
		}
		ts := httptest.NewServer(ring.Handler())
		b.Cleanup(ts.Close)
		pickers[model] = ts.URL
	}
	fetch := podmetrics.HTTPFetch(&http.Client{Timeout: 5 * time.Second}, func(t podmetrics.Target) string { return urls[t.Pod] })
	open := func(ctx context.Context, namespace, model string, backlog int) (io.ReadCloser, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/decisions?follow=1&limit=%d", pickers[model], backlog), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}

	// What the simulators and servers cost idle, before the dashboard starts.
	time.Sleep(time.Second)
	c0, t0 := cpuTime(b), time.Now()
	time.Sleep(3 * time.Second)
	baseline := float64(cpuTime(b)-c0) / float64(time.Since(t0))

	ctx, cancel := context.WithCancel(context.Background())
	p := tea.NewProgram(tui.New(tui.Options{Name: "bench"}), tea.WithContext(ctx), tea.WithInput(nil),
		tea.WithOutput(io.Discard), tea.WithoutSignalHandler())
	watcher := observe.NewWatcher(observe.Options{Clientset: w.Clientset, Dynamic: w.Dynamic, Fetch: fetch, OpenStream: open})
	var snaps atomic.Int64
	done := make(chan struct{}, 2)
	go func() { _, _ = p.Run(); done <- struct{}{} }()
	p.Send(tea.WindowSizeMsg{Width: 80, Height: 24})
	go func() {
		_ = watcher.Run(ctx, func(s observe.Snapshot) { snaps.Add(1); p.Send(tui.SnapshotMsg{Snapshot: s}) })
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done }()
	time.Sleep(3 * time.Second) // informers synced, first scrapes done

	b.ResetTimer()
	c1, t1, s1 := cpuTime(b), time.Now(), snaps.Load()
	for range b.N {
		time.Sleep(time.Second)
	}
	wall := time.Since(t1)
	total := float64(cpuTime(b)-c1) / float64(wall)
	b.ReportMetric(100*(total-baseline), "cpu-%-of-core")
	b.ReportMetric(100*baseline, "baseline-%")
	b.ReportMetric(float64(snaps.Load()-s1)/wall.Seconds(), "snapshots/s")
}
