// Package load implements `sandbox load`.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/load/target"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// Options of `load`.
type Options struct {
	Namespace          string
	URL, APIKey, Model string
	Config             load.Config
	NoPodShare         bool
	Output             string
	// Headers are the raw --header flags ("Name: value").
	Headers []string
}

// NewCmd returns `sandbox load`; runF replaces the run in tests of flag parsing.
func NewCmd(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{Namespace: models.DefaultNamespace}
	opts.Config = load.Config{Stream: true, MaxTokens: 32, Workload: load.DefaultWorkload(), Concurrency: 4, Duration: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Generate OpenAI traffic against a model and report latency and routing",
		Long: `Send chat completions to a model through the sandbox's gateway and report throughput,
TTFT / inter-token / end-to-end latency (p50, p90, p99), status codes and each pod's share
of the requests (from the pods' own counters).

Open loop (--rate) sends Poisson arrivals on a schedule fixed in advance; latencies run
from each request's scheduled time, so time spent queued in this client counts. Closed
loop (--concurrency) keeps N requests in flight. Requests sent during --warmup are not
measured; --duration is the measured window after it. Every run is bounded (--duration or
--requests) and only targets this machine: the sandbox's gateway, or a loopback --url.

Workloads: shared-prefix (--families system prompts of --prefix-chars characters, each
followed by a new ~--question-tokens question), random (the same sizes, nothing shared),
multi-turn (--families conversations of --turns turns resending their history).`,
		Example: `  # 4 clients for 30 s against the first deployed model
  sandbox load

  # issue #5's benchmark: 8 families x ~2,000-char prefix + ~20-token question, 32 streamed
  # tokens, Poisson arrivals at 24 req/s, 10 s warm-up, 45 s measured
  sandbox load --model phi-4-mini --rate 24 --warmup 10s --duration 45s \
    --workload shared-prefix --families 8 --prefix-chars 2000 --question-tokens 20 --max-tokens 32

  # closed-loop capacity with 32 clients, as JSON for scripts
  sandbox load --concurrency 32 --duration 45s --warmup 10s -o json | jq .throughputRps

  # exactly 100 unrelated prompts, not streamed
  sandbox load --workload random --requests 100 --stream=false

  # as a sheddable InferenceObjective (negative priority): the report counts the 429s the
  # endpoint picker answers while the pool is saturated (docs/epp.md)
  sandbox load --concurrency 16 --header "x-gateway-inference-objective: batch"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if fl.Changed("rate") && fl.Changed("concurrency") {
				return errors.New("--rate (open loop) and --concurrency (closed loop) exclude each other")
			}
			if fl.Changed("rate") {
				opts.Config.Concurrency = 0
			}
			if fl.Changed("requests") && !fl.Changed("duration") {
				opts.Config.Duration = 0
			}
			if opts.Output != "" && opts.Output != "table" && opts.Output != "json" {
				return fmt.Errorf("-o %q: must be table or json", opts.Output)
			}
			h, err := load.ParseHeaders(opts.Headers)
			if err != nil {
				return fmt.Errorf("--header: %w", err)
			}
			opts.Config.Headers = h
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return run(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	c := &opts.Config
	fl.StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "workload namespace")
	fl.StringVar(&opts.URL, "url", "", "gateway base URL (loopback only; default: the sandbox's gateway)")
	fl.StringVar(&opts.APIKey, "api-key", "", "API key (default: the namespace's key)")
	fl.StringVarP(&opts.Model, "model", "m", "", "model to load (default: the first deployed model)")
	fl.Float64Var(&c.Rate, "rate", 0, "open loop: Poisson arrivals per second")
	fl.IntVarP(&c.Concurrency, "concurrency", "c", c.Concurrency, "closed loop: requests kept in flight")
	fl.DurationVarP(&c.Duration, "duration", "d", c.Duration, "measured window after the warm-up")
	fl.IntVar(&c.Requests, "requests", 0, "stop after this many measured requests")
	fl.DurationVar(&c.Warmup, "warmup", 0, "time sent but not measured before the window")
	fl.StringVar(&c.Workload.Kind, "workload", c.Workload.Kind, "shared-prefix, random or multi-turn")
	fl.IntVar(&c.Workload.Families, "families", c.Workload.Families, "shared prefixes (conversations for multi-turn)")
	fl.IntVar(&c.Workload.SuffixesPerFamily, "suffixes", 0, "distinct questions per family (0: every question new)")
	fl.IntVar(&c.Workload.PrefixChars, "prefix-chars", c.Workload.PrefixChars, "length of each shared prefix in characters")
	fl.IntVar(&c.Workload.QuestionTokens, "question-tokens", c.Workload.QuestionTokens, "length of each question in words (≈ tokens)")
	fl.IntVar(&c.Workload.Turns, "turns", c.Workload.Turns, "turns per multi-turn conversation")
	fl.Int64Var(&c.Workload.Seed, "seed", c.Workload.Seed, "seed of the prompts and arrival times")
	fl.IntVar(&c.MaxTokens, "max-tokens", c.MaxTokens, "tokens per answer (sent with ignore_eos, so exact)")
	fl.BoolVar(&c.Stream, "stream", c.Stream, "stream answers (needed for TTFT and inter-token latency)")
	fl.DurationVar(&c.RequestTimeout, "timeout", 60*time.Second, "limit of each request")
	fl.StringArrayVarP(&opts.Headers, "header", "H", nil, "extra request header \"Name: value\" (repeatable), e.g. x-gateway-inference-objective")
	fl.BoolVar(&opts.NoPodShare, "no-pod-share", false, "do not read the pods' counters")
	fl.StringVarP(&opts.Output, "output", "o", "", "output format: table (default) or json")
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t, err := target.Resolve(ctx, target.Request{
		Sandbox: f.Name, Kubeconfig: f.KubeconfigPath(), Namespace: opts.Namespace,
		URL: opts.URL, APIKey: opts.APIKey, Model: opts.Model,
	})
	if err != nil {
		return err
	}
	cfg := opts.Config
	cfg.URL, cfg.APIKey, cfg.Model = t.URL, t.APIKey, t.Model
	if t.Own && t.Client != nil && !opts.NoPodShare {
		cfg.PodCounter = podmetrics.NewModelCounter(t.Client.Clientset, t.Namespace, t.Model)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	pl := newProgressLine(f.IOStreams.ErrOut, f.IOStreams.IsStderrTTY())
	rep, err := load.Run(ctx, cfg, pl.update)
	pl.finish()
	if err != nil {
		return fmt.Errorf("load on %s: %w", t.Model, err)
	}
	if opts.Output == "json" {
		err = rep.WriteJSON(f.IOStreams.Out)
	} else {
		err = rep.WriteTable(f.IOStreams.Out)
	}
	if err != nil {
		return err
	}
	if rep.Interrupted {
		return &cmdutil.ExitError{Code: 130, Err: cmdutil.ErrSilent}
	}
	return nil
}

// progressLine shows one line on stderr: rewritten in place on a terminal, a plain line every
// 5 s otherwise, so logs of CI runs stay readable.
type progressLine struct {
	w     io.Writer
	tty   bool
	last  time.Time
	wrote bool
}

func newProgressLine(w io.Writer, tty bool) *progressLine { return &progressLine{w: w, tty: tty} }

func (p *progressLine) update(pr load.Progress) {
	phase := "measuring"
	if pr.Warmup {
		phase = "warming up"
	}
	line := fmt.Sprintf("%s %5.1fs  sent %d  done %d  in flight %d  errors %d  %.1f req/s  TTFT p50 %s",
		phase, pr.Elapsed.Seconds(), pr.Sent, pr.Done, pr.InFlight, pr.Errors, pr.RPS, pr.TTFTp50.Round(100*time.Microsecond))
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.wrote = true
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		fmt.Fprintln(p.w, line)
		p.last = time.Now()
	}
}

func (p *progressLine) finish() {
	if p.tty && p.wrote {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
