package load

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/iostreams"
	"github.com/inference-sandbox/sandbox/internal/load"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(*Options) bool
		err   string
	}{
		{args: nil, check: func(o *Options) bool {
			c := o.Config
			return c.Concurrency == 4 && c.Rate == 0 && c.Duration == 30*time.Second && c.Stream && c.MaxTokens == 32 &&
				c.Workload == load.DefaultWorkload()
		}},
		{args: []string{"--rate", "24", "--warmup", "10s", "--duration", "45s"}, check: func(o *Options) bool {
			return o.Config.Rate == 24 && o.Config.Concurrency == 0 && o.Config.Warmup == 10*time.Second && o.Config.Duration == 45*time.Second
		}},
		{args: []string{"--requests", "100", "--stream=false", "--workload", "random"}, check: func(o *Options) bool {
			return o.Config.Requests == 100 && o.Config.Duration == 0 && !o.Config.Stream && o.Config.Workload.Kind == "random"
		}},
		{args: []string{"--rate", "5", "--concurrency", "3"}, err: "exclude each other"},
		{args: []string{"-o", "yaml"}, err: "must be table or json"},
		{args: []string{"-H", "x-gateway-inference-objective: batch", "--header", "X-Trace: 1"}, check: func(o *Options) bool {
			return o.Config.Headers.Get("X-Gateway-Inference-Objective") == "batch" && o.Config.Headers.Get("X-Trace") == "1"
		}},
		{args: []string{"--header", "Authorization: Bearer x"}, err: "use --api-key"},
		{args: []string{"--header", "nocolon"}, err: `want "Name: value"`},
	} {
		var got *Options
		cmd := NewCmd(cmdutil.New(), func(_ context.Context, o *Options) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		err := cmd.Execute()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !tc.check(got) {
			t.Errorf("%v: %v, options %+v", tc.args, err, got)
		}
	}
}

// TestCommandAgainstStack runs the command with --url, --api-key and --model against the
// in-process stack: JSON on stdout, progress on stderr, no cluster needed.
func TestCommandAgainstStack(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Sims: 2}, "phi-4-mini")
	ios, _, stdout, stderr := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: "test", Kubeconfig: filepath.Join(t.TempDir(), "none")}
	cmd := NewCmd(f, nil)
	cmd.SetArgs([]string{"--url", s.URL, "--api-key", stacktest.Key, "--model", "phi-4-mini",
		"--concurrency", "2", "--requests", "20", "--max-tokens", "4", "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep load.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
	}
	if rep.Succeeded != 20 || rep.Model != "phi-4-mini" || rep.TTFT.Count != 20 {
		t.Errorf("report: %+v", rep)
	}
	if !strings.Contains(stderr.String(), "done") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}

	cmd = NewCmd(f, nil)
	cmd.SetArgs([]string{"--url", "http://10.1.2.3:30080", "--api-key", "k", "--model", "m", "--requests", "1"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "refusing to send load to 10.1.2.3:30080") {
		t.Errorf("non-loopback --url: %v", err)
	}
}

func TestProgressLine(t *testing.T) {
	var tty strings.Builder
	p := newProgressLine(&tty, true)
	p.update(load.Progress{Elapsed: time.Second, Warmup: true, Sent: 5, Done: 3, InFlight: 2, RPS: 3})
	p.update(load.Progress{Elapsed: 2 * time.Second, Sent: 9, Done: 8, InFlight: 1, RPS: 4, TTFTp50: 12 * time.Millisecond})
	p.finish()
	if got := tty.String(); strings.Count(got, "\r\x1b[K") != 3 || !strings.Contains(got, "warming up") ||
		!strings.Contains(got, "measuring   2.0s  sent 9  done 8  in flight 1") || strings.Contains(got, "\n") {
		t.Errorf("terminal progress: %q", got)
	}
	var plain strings.Builder
	p = newProgressLine(&plain, false)
	for i := range 10 {
		p.update(load.Progress{Elapsed: time.Duration(i) * 250 * time.Millisecond})
	}
	p.finish()
	if got := plain.String(); strings.Count(got, "\n") != 1 || strings.Contains(got, "\r") {
		t.Errorf("plain progress should be one line per 5 s: %q", got)
	}
}
