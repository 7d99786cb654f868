package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
)

var weatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name: "get_weather",
	Parameters: shared.FunctionParameters{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string"},
			"unit":  map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
			"days":  map[string]any{"type": "integer"},
			"hours": map[string]any{"type": "array", "items": map[string]any{"type": "number"}, "minItems": 2, "maxItems": 3},
			"where": map[string]any{"type": "object", "properties": map[string]any{"lat": map[string]any{"type": "number"}}, "required": []string{"lat"}},
		},
		"required": []string{"city", "unit", "days", "hours", "where"},
	},
})

var otherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:       "noop",
	Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{}},
})

func checkWeatherArgs(t *testing.T, args string) {
	t.Helper()
	var a struct {
		City  string    `json:"city"`
		Unit  string    `json:"unit"`
		Days  *int      `json:"days"`
		Hours []float64 `json:"hours"`
		Where *struct {
			Lat *float64 `json:"lat"`
		} `json:"where"`
	}
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		t.Fatalf("arguments %q: %v", args, err)
	}
	if a.City == "" || (a.Unit != "celsius" && a.Unit != "fahrenheit") || a.Days == nil || *a.Days < 0 || *a.Days > 100 ||
		len(a.Hours) < 2 || len(a.Hours) > 3 || a.Where == nil || a.Where.Lat == nil {
		t.Errorf("arguments do not fit the schema: %s", args)
	}
}

func TestToolCallsRequiredAndForced(t *testing.T) {
	_, ts := newTestServer(t, nil)
	client := newClient(ts.URL)
	params := openai.ChatCompletionNewParams{
		Model:      testModel,
		Messages:   []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Paris?")},
		Tools:      []openai.ChatCompletionToolUnionParam{weatherTool},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
	}
	resp, err := client.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
		t.Fatalf("choice %+v", c)
	}
	call := c.Message.ToolCalls[0]
	if call.Function.Name != "get_weather" || !strings.HasPrefix(call.ID, "chatcmpl-tool-") || call.Type != "function" {
		t.Errorf("call %+v", call)
	}
	checkWeatherArgs(t, call.Function.Arguments)
	if want := int64(3 + countTokens(call.Function.Arguments)); resp.Usage.CompletionTokens != want {
		t.Errorf("completion tokens %d, want %d", resp.Usage.CompletionTokens, want)
	}

	// A forced function is the only one called; streamed, the accumulator rebuilds it.
	params.Tools = []openai.ChatCompletionToolUnionParam{otherTool, weatherTool}
	params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{
		OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}}}
	stream := client.Chat.Completions.NewStreaming(context.Background(), params)
	acc := openai.ChatCompletionAccumulator{}
	var last openai.ChatCompletionChunk
	for stream.Next() {
		last = stream.Current()
		acc.AddChunk(last)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	got := acc.Choices[0]
	if got.FinishReason != "tool_calls" || len(got.Message.ToolCalls) != 1 || got.Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("streamed choice %+v", got)
	}
	checkWeatherArgs(t, got.Message.ToolCalls[0].Function.Arguments)
	if len(last.Choices) != 1 || last.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("finish_reason must ride on the last tool chunk: %+v", last)
	}
}

func TestToolChoiceNoneAndErrors(t *testing.T) {
	_, ts := newTestServer(t, nil)
	client := newClient(ts.URL)
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		Tools: []openai.ChatCompletionToolUnionParam{weatherTool}, MaxTokens: openai.Int(3),
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices[0].Message.ToolCalls) != 0 || resp.Choices[0].Message.Content == "" {
		t.Errorf("tool_choice none: %+v", resp.Choices[0])
	}
	for _, body := range []string{
		`{"model":"test-model","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"date"}}}}}]}`,
		`{"model":"test-model","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`,
		`{"model":"test-model","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`,
	} {
		if status, out, _ := post(t, ts.URL+"/v1/chat/completions", body); status != http.StatusBadRequest || !strings.Contains(out, "tool") {
			t.Errorf("%s: %d %s", body, status, out)
		}
	}
}

func TestToolSchemaSizeIsBounded(t *testing.T) {
	_, ts := newTestServer(t, nil)
	nested := `{"type":"array","maxItems":100,"items":{"type":"array","maxItems":100,"items":{"type":"array","maxItems":100,"items":{"type":"integer"}}}}`
	body := `{"model":"test-model","messages":[{"role":"user","content":"x"}],"tool_choice":"required","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":` + nested + `},"required":["a"]}}}]}`
	if status, out, _ := post(t, ts.URL+"/v1/chat/completions", body); status != http.StatusBadRequest || !strings.Contains(out, "generated values") {
		t.Errorf("oversized schema: %d %s", status, out)
	}
}
