package openai

import "encoding/json"

// Usage counts tokens of one request; the simulator always fills PromptTokensDetails
// because vLLM reports prefix-cache hits there.
type Usage struct {
	PromptTokens        int64                `json:"prompt_tokens"`
	CompletionTokens    int64                `json:"completion_tokens"`
	TotalTokens         int64                `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails breaks the prompt tokens down.
type PromptTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// AssistantMessage is the message of a non-streaming chat choice.
type AssistantMessage struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChatCompletionChoice is one choice of a non-streaming chat completion.
type ChatCompletionChoice struct {
	Index        int              `json:"index"`
	FinishReason string           `json:"finish_reason"`
	Message      AssistantMessage `json:"message"`
}

// ChatCompletion is the non-streaming response of /v1/chat/completions.
type ChatCompletion struct {
	ID               string                 `json:"id"`
	Object           string                 `json:"object"`
	Created          int64                  `json:"created"`
	Model            string                 `json:"model"`
	Choices          []ChatCompletionChoice `json:"choices"`
	Usage            *Usage                 `json:"usage,omitempty"`
	KVTransferParams *KVTransferParams      `json:"kv_transfer_params,omitempty"`
}

// ChatDelta is the incremental message of a streamed chat choice. The first chunk carries
// only the role, token chunks only content, and the closing chunk nothing.
type ChatDelta struct {
	Role      string     `json:"role,omitempty"`
	Content   string     `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChatChunkChoice is one choice of a streamed chat chunk; FinishReason is null until the end.
type ChatChunkChoice struct {
	Index        int       `json:"index"`
	FinishReason *string   `json:"finish_reason"`
	Delta        ChatDelta `json:"delta"`
}

// ChatCompletionChunk is one SSE frame of a streamed chat completion. Usage is written as
// null rather than omitted on every chunk but the usage chunk, as vLLM does.
type ChatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Usage   *Usage            `json:"usage"`
	Choices []ChatChunkChoice `json:"choices"`
}

// CompletionChoice is one choice of a text completion, streamed or not.
type CompletionChoice struct {
	Index        int     `json:"index"`
	FinishReason *string `json:"finish_reason"`
	Text         string  `json:"text"`
}

// Completion is the non-streaming response of /v1/completions.
type Completion struct {
	ID               string             `json:"id"`
	Object           string             `json:"object"`
	Created          int64              `json:"created"`
	Model            string             `json:"model"`
	Choices          []CompletionChoice `json:"choices"`
	Usage            *Usage             `json:"usage,omitempty"`
	KVTransferParams *KVTransferParams  `json:"kv_transfer_params,omitempty"`
}

// CompletionChunk is one SSE frame of a streamed text completion.
type CompletionChunk struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Usage   *Usage             `json:"usage"`
	Choices []CompletionChoice `json:"choices"`
}

// Model is one entry of GET /v1/models (vLLM's ModelCard).
type Model struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen int     `json:"max_model_len,omitempty"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// appendMarshal is the slow path of the hand-written encoders for rarely used nested
// values; these types cannot fail to marshal.
func appendMarshal(b []byte, v any) []byte {
	out, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, out...)
}
