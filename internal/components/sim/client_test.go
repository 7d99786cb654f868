package sim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// These tests drive the simulator with the official OpenAI Go client over loopback, so
// wire-format mistakes show up as client decoding errors.

func newClient(baseURL string) openai.Client {
	return openai.NewClient(option.WithBaseURL(baseURL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func TestOpenAIClientChat(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.ServedModelNames = []string{testModel, "alias"} })
	client := newClient(ts.URL)
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:     "alias",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("Hello there, simulator!")},
		MaxTokens: openai.Int(16),
		N:         openai.Int(2),
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if resp.Model != testModel {
		t.Errorf("model = %q, want the first served name %q", resp.Model, testModel)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" {
		t.Errorf("id/object = %q/%q", resp.ID, resp.Object)
	}
	if len(resp.Choices) != 2 {
		t.Fatalf("choices = %d, want 2", len(resp.Choices))
	}
	var completion int64
	for i, c := range resp.Choices {
		n := int64(countTokens(c.Message.Content))
		completion += n
		if c.Index != int64(i) || c.Message.Role != "assistant" || n < 1 || n > 16 {
			t.Errorf("choice %d: index %d role %q tokens %d", i, c.Index, c.Message.Role, n)
		}
		if want := map[bool]string{true: "length", false: "stop"}[n == 16]; c.FinishReason != want {
			t.Errorf("choice %d: finish_reason %q with %d tokens, want %q", i, c.FinishReason, n, want)
		}
	}
	// "### system: be brief\n### user: Hello there, simulator!\n" in dummy-tokenizer tokens.
	wantPrompt := int64(countTokens("### system: be brief\n### user: Hello there, simulator!\n"))
	if resp.Usage.PromptTokens != wantPrompt || resp.Usage.CompletionTokens != completion ||
		resp.Usage.TotalTokens != wantPrompt+completion {
		t.Errorf("usage = %+v, want prompt %d completion %d", resp.Usage, wantPrompt, completion)
	}
}

func TestOpenAIClientEchoAndCompletions(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.Mode = ModeEcho })
	client := newClient(ts.URL)
	chat, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    testModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("first"), openai.AssistantMessage("ok"), openai.UserMessage("echo me, please")},
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if got := chat.Choices[0].Message.Content; got != "echo me, please" || chat.Choices[0].FinishReason != "stop" {
		t.Errorf("echo chat = %q (%s)", got, chat.Choices[0].FinishReason)
	}
	comp, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel(testModel),
		Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"one two", "three"}},
	})
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	if !strings.HasPrefix(comp.ID, "cmpl-") || comp.Object != "text_completion" || len(comp.Choices) != 2 {
		t.Fatalf("completion = %+v", comp)
	}
	if comp.Choices[0].Text != "one two" || comp.Choices[1].Text != "three" {
		t.Errorf("echo texts = %q, %q", comp.Choices[0].Text, comp.Choices[1].Text)
	}
	if comp.Usage.PromptTokens != 3 || comp.Usage.CompletionTokens != 3 {
		t.Errorf("usage = %+v", comp.Usage)
	}
}

func TestOpenAIClientStreamingWithUsage(t *testing.T) {
	_, ts := newTestServer(t, nil)
	client := newClient(ts.URL)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         testModel,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream please")},
		MaxTokens:     openai.Int(10),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	acc := openai.ChatCompletionAccumulator{}
	chunks, contentChunks := 0, 0
	var usageSeen bool
	for stream.Next() {
		ch := stream.Current()
		chunks++
		acc.AddChunk(ch)
		if ch.Object != "chat.completion.chunk" {
			t.Errorf("chunk object %q", ch.Object)
		}
		if len(ch.Choices) == 1 && ch.Choices[0].Delta.Content != "" {
			contentChunks++
		}
		if len(ch.Choices) == 0 {
			usageSeen = true
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if !usageSeen {
		t.Fatal("no usage chunk despite include_usage")
	}
	got := acc.Choices[0]
	if got.Message.Role != "assistant" || got.FinishReason == "" {
		t.Errorf("accumulated choice = %+v", got)
	}
	if n := countTokens(got.Message.Content); n != contentChunks || int64(n) != acc.Usage.CompletionTokens {
		t.Errorf("content tokens %d, content chunks %d, usage %d", n, contentChunks, acc.Usage.CompletionTokens)
	}
	// role chunk + one per token + finish chunk + usage chunk
	if chunks != contentChunks+3 {
		t.Errorf("chunks = %d, want %d", chunks, contentChunks+3)
	}

	cs := client.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:         openai.CompletionNewParamsModel(testModel),
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("go")},
		MaxTokens:     openai.Int(5),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text strings.Builder
	var usage int64
	for cs.Next() {
		c := cs.Current()
		if len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Text)
		}
		usage += c.Usage.CompletionTokens
	}
	if err := cs.Err(); err != nil {
		t.Fatalf("completion stream: %v", err)
	}
	if n := countTokens(text.String()); n == 0 || int64(n) != usage {
		t.Errorf("completion stream text %q (%d tokens), usage %d", text.String(), n, usage)
	}
}

func TestOpenAIClientModels(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) {
		c.ServedModelNames = []string{"a", "b"}
		c.LoraModules = LoraModules{{Name: "lora1", Path: "/adapters/1"}}
	})
	client := newClient(ts.URL)
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatalf("models: %v", err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.OwnedBy != "vllm" || m.Object != "model" {
			t.Errorf("model %+v", m)
		}
	}
	if strings.Join(ids, ",") != "a,b,lora1" {
		t.Errorf("ids = %v", ids)
	}
}

func apiStatus(t *testing.T, err error) (*openai.Error, int) {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want *openai.Error, got %T %v", err, err)
	}
	return apiErr, apiErr.StatusCode
}

func TestOpenAIClientErrors(t *testing.T) {
	s, ts := newTestServer(t, func(c *Config) {
		c.MaxNumSeqs, c.MaxWaitingQueueLength = 1, 1
		c.TimeToFirstToken = Duration(10 * time.Second)
	})
	client := newClient(ts.URL)
	chat := func(ctx context.Context, model string, max int64) error {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(max)})
		return err
	}

	e, status := apiStatus(t, chat(context.Background(), "no-such-model", 5))
	if status != http.StatusNotFound || e.Type != "NotFoundError" || e.Param != "model" || !strings.Contains(e.Message, "`no-such-model` does not exist") {
		t.Errorf("404: %d %+v", status, e)
	}
	e, status = apiStatus(t, chat(context.Background(), testModel, -1))
	if status != http.StatusBadRequest || e.Type != "BadRequestError" {
		t.Errorf("400: %d %+v", status, e)
	}
	_, status = apiStatus(t, chat(context.Background(), testModel, 5000))
	if status != http.StatusBadRequest {
		t.Errorf("context window: %d", status)
	}

	// Fill the only slot and the only queue place, then the next request must get 429.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = chat(ctx, testModel, 5) }()
	}
	eventually(t, 5*time.Second, "one running and one waiting", func() bool {
		f := scrape(t, ts.URL)
		return value(f, "vllm:num_requests_running", modelLabel()) == 1 && value(f, "vllm:num_requests_waiting", modelLabel()) == 1
	})
	e, status = apiStatus(t, chat(context.Background(), testModel, 5))
	if status != http.StatusTooManyRequests || e.Type != "RateLimitError" || !strings.Contains(e.Message, "waiting requests queue is full") {
		t.Errorf("429: %d %+v", status, e)
	}
	cancel()
	wg.Wait()
	eventually(t, 5*time.Second, "slots freed after cancellation", func() bool { return s.sched.load() == 0 })
}
