// Package dashboard implements `sandbox dashboard`.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/observe"
	"github.com/inference-sandbox/sandbox/internal/progress"
	"github.com/inference-sandbox/sandbox/internal/tui"
)

// Options of `dashboard`.
type Options struct {
	// LoadConcurrency and LoadDuration shape the built-in load of the `l` key.
	LoadConcurrency int
	LoadDuration    time.Duration
	ScrapeEvery     time.Duration
}

// NewCmd returns `sandbox dashboard`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{LoadConcurrency: 30, LoadDuration: 10 * time.Minute, ScrapeEvery: 2 * time.Second}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Watch routing decisions and replicas live",
		Long: `A terminal dashboard of the sandbox: models (replicas, autoscaling metric, requests/s,
TTFT, errors), pods (fake GPU node, queue, KV cache, prefix-cache hits), the endpoint pickers'
routing decisions as they happen, and a scaling timeline with the metric value behind each
replica change and the pods that found no free fake GPU.

Keys: tab/shift-tab switch views, arrows move, / filters, enter opens a pod's details,
l starts or stops a built-in load on the selected model, ? lists every key, q quits.
A source that stops answering is shown as stale on the second line; nothing waits on it.`,
		Example: `  sandbox dashboard
  sandbox dashboard --name demo
  NO_COLOR=1 sandbox dashboard                 # no colours
  sandbox dashboard --load-concurrency 60      # a heavier load on the l key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.LoadConcurrency < 1 || opts.LoadConcurrency > load.MaxConcurrency {
				return fmt.Errorf("--load-concurrency %d: want 1..%d", opts.LoadConcurrency, load.MaxConcurrency)
			}
			if opts.LoadDuration <= 0 || opts.LoadDuration > load.MaxDuration {
				return fmt.Errorf("--load-duration %s: want up to %s", opts.LoadDuration, load.MaxDuration)
			}
			if opts.ScrapeEvery < 500*time.Millisecond {
				return fmt.Errorf("--scrape-interval %s: want at least 500ms (every scrape goes through the API server)", opts.ScrapeEvery)
			}
			return run(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.LoadConcurrency, "load-concurrency", opts.LoadConcurrency, "requests the l key keeps in flight (closed loop)")
	fl.DurationVar(&opts.LoadDuration, "load-duration", opts.LoadDuration, "how long the l key's load runs unless stopped")
	fl.DurationVar(&opts.ScrapeEvery, "scrape-interval", opts.ScrapeEvery, "how often pod metrics are scraped")
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	if !f.IOStreams.IsStdoutTTY() {
		return errors.New("the dashboard needs a terminal; for scripts use `sandbox status -o json` or `sandbox model list -o json`")
	}
	client, err := kube.New(f.KubeconfigPath())
	if err != nil {
		return fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", f.Name, err)
	}
	// client-go logs watch failures through klog, which would scribble over the screen; the
	// dashboard shows them as stale sources instead.
	klog.SetLogger(logr.Discard())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	endpoints := map[string]string{}
	// Only the default namespace's gateway is published on 127.0.0.1; without a kind cluster
	// (--kubeconfig to another one) there is no endpoint and no built-in load.
	var ld tui.Loader
	if port, err := cluster.New(progress.Discard()).GatewayPort(ctx, f.Name); err == nil {
		endpoints[models.DefaultNamespace] = fmt.Sprintf("http://127.0.0.1:%d", port)
		ld = &loader{url: endpoints[models.DefaultNamespace], concurrency: opts.LoadConcurrency, duration: opts.LoadDuration,
			key: func(ctx context.Context, namespace string) (string, error) {
				return models.APIKey(ctx, client, namespace)
			}}
	}
	m := tui.New(tui.Options{Name: f.Name, Color: f.IOStreams.ColorEnabled(), Loader: ld})
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx),
		tea.WithInput(f.IOStreams.In), tea.WithOutput(f.IOStreams.Out))

	w := observe.NewWatcher(observe.Options{Clientset: client.Clientset, Dynamic: client.Dynamic,
		Endpoints: endpoints, ScrapeEvery: opts.ScrapeEvery})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx, func(s observe.Snapshot) { p.Send(tui.SnapshotMsg{Snapshot: s}) })
	}()
	_, err = p.Run()
	cancel()
	<-done
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// loader runs `sandbox load`'s engine on the model the user picked, through the gateway.
type loader struct {
	url         string
	key         func(ctx context.Context, namespace string) (string, error)
	concurrency int
	duration    time.Duration
}

func (l *loader) Start(ctx context.Context, namespace, model string) <-chan tui.LoadUpdate {
	ch := make(chan tui.LoadUpdate, 4)
	go func() {
		defer close(ch)
		send := func(u tui.LoadUpdate) {
			select {
			case ch <- u:
			default: // the view is behind; the next update supersedes this one
			}
		}
		if namespace != models.DefaultNamespace {
			ch <- tui.LoadUpdate{Err: fmt.Errorf("only namespace %s's gateway is published on this machine", models.DefaultNamespace)}
			return
		}
		key, err := l.key(ctx, namespace)
		if err != nil {
			ch <- tui.LoadUpdate{Err: err}
			return
		}
		cfg := load.Config{URL: l.url, APIKey: key, Model: model, Concurrency: l.concurrency,
			Duration: l.duration, Stream: true, Workload: load.DefaultWorkload(), MaxTokens: 64}
		if err := cfg.Validate(); err != nil {
			ch <- tui.LoadUpdate{Err: err}
			return
		}
		var last tui.LoadUpdate
		_, err = load.Run(ctx, cfg, func(p load.Progress) {
			last = tui.LoadUpdate{Elapsed: p.Elapsed, Sent: p.Sent, Done: p.Done, Errors: p.Errors, RPS: p.RPS, TTFTp50: p.TTFTp50, LastError: p.LastError}
			send(last)
		})
		if err != nil && ctx.Err() == nil {
			last.Err = err
			ch <- last
		}
	}()
	return ch
}
