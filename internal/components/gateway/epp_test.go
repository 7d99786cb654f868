package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inference-sandbox/sandbox/internal/components/epp"
	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/sim"
)

// TestWithTheSandboxEndpointPicker replaces the scripted picker with the offline EPP (its
// default scorers, scraping the simulators' metrics), so the two sides of the ext_proc
// protocol that ship together are checked against each other, streaming included.
func TestWithTheSandboxEndpointPicker(t *testing.T) {
	s := newStack(t, stackOptions{simsPerModel: 2, simConfig: func(c *sim.Config) {
		c.InterTokenLatency = sim.Duration(5 * time.Millisecond)
	}}, "phi-4-mini")
	m := s.models["phi-4-mini"]
	var specs []datastore.Spec
	for _, a := range m.addrs {
		specs = append(specs, datastore.Spec{Name: a, Address: a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	picker, err := epp.Start(ctx, epp.Options{
		Source: datastore.StaticSource(specs), GRPCAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		RefreshMetricsInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := picker.Wait(); err != nil {
			t.Errorf("picker: %v", err)
		}
	})
	s.setPool("phi-4-mini", func(p *routing.Pool) { p.Picker = picker.GRPCAddr() })
	if !waitFor(5*time.Second, func() bool { return len(picker.Store().Endpoints()) == len(specs) }) {
		t.Fatal("the picker never learned its endpoints")
	}

	client := s.client(testKey)
	prompt := strings.Repeat("The same long system prompt for every request. ", 40)
	pods := map[string]int{}
	for range 4 {
		var raw *http.Response
		resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:     "phi-4-mini",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			MaxTokens: openai.Int(4),
		}, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatalf("chat through the EPP: %v", err)
		}
		if resp.Model != "phi-4-mini" {
			t.Errorf("model = %q", resp.Model)
		}
		pods[raw.Header.Get("X-Inference-Pod")]++
	}
	if len(pods) != 1 {
		t.Errorf("identical prompts went to %v; the prefix-cache scorer should keep them on one pod", pods)
	}

	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:     "phi-4-mini",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream through the picker")},
		MaxTokens: openai.Int(12),
	})
	var chunks int
	for stream.Next() {
		chunks++
	}
	if err := stream.Err(); err != nil || chunks < 3 {
		t.Errorf("stream through the EPP: %d chunks, %v", chunks, err)
	}

	// An empty pool: the EPP answers 503, the client gets upstream's retryable model_unavailable.
	picker.Store().Replace(nil)
	resp := s.do("POST", "/v1/chat/completions", chatBody("phi-4-mini"))
	e := errorReply(t, resp)
	if resp.StatusCode != 503 || e.Code != "model_unavailable" {
		t.Errorf("empty pool: %d %+v", resp.StatusCode, e)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}
