// Package chat implements `sandbox chat`.
package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/load/target"
	"github.com/inference-sandbox/sandbox/internal/models"
)

// Options of `chat`.
type Options struct {
	Namespace          string
	URL, APIKey, Model string
	Prompt             string
	MaxTokens          int
	Timeout            time.Duration
	Output             string
	// Headers are the raw --header flags ("Name: value").
	Headers []string
	headers http.Header
}

// NewCmd returns `sandbox chat`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{Namespace: models.DefaultNamespace, MaxTokens: 64, Timeout: 60 * time.Second}
	cmd := &cobra.Command{
		Use:   "chat <prompt>",
		Short: "Send one prompt through the gateway and stream the answer",
		Long: `Send one chat completion through the sandbox's gateway, print the answer as it streams,
then which pod served it: the endpoint picker's decision for the request's X-Request-Id,
read through the API server, or "unknown" when it has no record.`,
		Example: `  sandbox chat "What is a KV cache?"
  sandbox chat --model qwen-2.5-7b --max-tokens 16 "Hello"
  sandbox chat -o json "Hi" | jq -r .pod
  sandbox chat -H "x-gateway-inference-objective: batch" "Summarise this"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Output != "" && opts.Output != "text" && opts.Output != "json" {
				return fmt.Errorf("-o %q: must be text or json", opts.Output)
			}
			h, err := load.ParseHeaders(opts.Headers)
			if err != nil {
				return fmt.Errorf("--header: %w", err)
			}
			opts.Prompt, opts.headers = args[0], h
			return run(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "workload namespace")
	fl.StringVar(&opts.URL, "url", "", "gateway base URL (loopback only; default: the sandbox's gateway)")
	fl.StringVar(&opts.APIKey, "api-key", "", "API key (default: the namespace's key)")
	fl.StringVarP(&opts.Model, "model", "m", "", "model (default: the first deployed model)")
	fl.IntVar(&opts.MaxTokens, "max-tokens", opts.MaxTokens, "longest answer in tokens")
	fl.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "limit of the request")
	fl.StringArrayVarP(&opts.Headers, "header", "H", nil, "extra request header \"Name: value\" (repeatable), e.g. x-gateway-inference-objective")
	fl.StringVarP(&opts.Output, "output", "o", "", "output format: text (default) or json")
	return cmd
}

// result is the -o json form.
type result struct {
	Model     string  `json:"model"`
	Answer    string  `json:"answer"`
	Tokens    int     `json:"tokens"`
	TTFTMs    float64 `json:"ttftMs"`
	TotalMs   float64 `json:"totalMs"`
	RequestID string  `json:"requestId"`
	// Pod is the serving pod, or "unknown".
	Pod string `json:"pod"`
	// PodSource says how the pod was found: response-header or endpoint-picker.
	PodSource string `json:"podSource,omitempty"`
	PodError  string `json:"podError,omitempty"`
}

func run(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	t, err := target.Resolve(ctx, target.Request{
		Sandbox: f.Name, Kubeconfig: f.KubeconfigPath(), Namespace: opts.Namespace,
		URL: opts.URL, APIKey: opts.APIKey, Model: opts.Model,
	})
	if err != nil {
		return err
	}
	out := f.IOStreams.Out
	jsonOut := opts.Output == "json"
	onText := func(s string) { fmt.Fprint(out, s) }
	if jsonOut {
		onText = nil
	}
	res, err := load.Chat(ctx, load.ChatRequest{
		URL: t.URL, APIKey: t.APIKey, Model: t.Model, Prompt: opts.Prompt,
		MaxTokens: opts.MaxTokens, RequestID: uuid.NewString(), Timeout: opts.Timeout, Headers: opts.headers,
	}, onText)
	if !jsonOut && res != nil && res.Content != "" {
		fmt.Fprintln(out)
	}
	if err != nil {
		return fmt.Errorf("chat with %s: %w", t.Model, err)
	}
	r := result{Model: t.Model, Answer: res.Content, Tokens: res.Tokens, RequestID: res.RequestID,
		TTFTMs: float64(res.TTFT.Microseconds()) / 1000, TotalMs: float64(res.Total.Microseconds()) / 1000, Pod: "unknown"}
	switch {
	case res.Pod != "":
		r.Pod, r.PodSource = res.Pod, "response-header"
	case t.Client != nil && t.Own:
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pod, err := target.ServedBy(lctx, t.Client.Clientset, t.Namespace, t.Model, res.RequestID)
		cancel()
		switch {
		case err != nil:
			r.PodError = err.Error()
		case pod != "":
			r.Pod, r.PodSource = pod, "endpoint-picker"
		}
	}
	if jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	why := ""
	if r.PodError != "" {
		why = " (" + strings.TrimSpace(r.PodError) + ")"
	}
	fmt.Fprintf(f.IOStreams.ErrOut, "model %s · pod %s%s · %d tokens · TTFT %s · total %s\n",
		t.Model, r.Pod, why, res.Tokens, res.TTFT.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	return nil
}
