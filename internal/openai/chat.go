package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Object names used in the "object" field of responses.
const (
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
	ObjectTextCompletion      = "text_completion"
	ObjectList                = "list"
	ObjectModel               = "model"
)

// Finish reasons. vLLM and llm-d-inference-sim add remote_decode (P/D prefill pods) and
// cache_threshold (cache hit rate below the requested threshold) to OpenAI's set.
const (
	FinishStop           = "stop"
	FinishLength         = "length"
	FinishToolCalls      = "tool_calls"
	FinishRemoteDecode   = "remote_decode"
	FinishCacheThreshold = "cache_threshold"
)

// StreamOptions controls extras of an SSE stream.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// KVTransferParams is vLLM's prefill/decode disaggregation hand-off, carried in requests
// and (for prefill pods) echoed with placeholder values in responses.
type KVTransferParams struct {
	DoRemoteDecode  bool    `json:"do_remote_decode"`
	DoRemotePrefill bool    `json:"do_remote_prefill"`
	RemoteEngineID  *string `json:"remote_engine_id"`
	RemoteBlockIDs  []any   `json:"remote_block_ids"`
	RemoteHost      *string `json:"remote_host"`
	RemotePort      int     `json:"remote_port"`
	TPSize          int     `json:"tp_size"`
}

// ContentPart is one block of an array-valued message content.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is the payload of an image_url content block.
type ImageURL struct {
	URL string `json:"url"`
}

// MessageContent is a message's content, which OpenAI allows to be either a plain string
// or an array of typed blocks; Parts is nil for the string form so it round-trips.
type MessageContent struct {
	Text  string
	Parts []ContentPart
}

// PlainText joins the text blocks; image blocks carry no text for tokenisation.
func (c MessageContent) PlainText() string {
	if c.Parts == nil {
		return c.Text
	}
	var b bytes.Buffer
	for i, p := range c.Parts {
		if p.Type != "text" {
			continue
		}
		if i > 0 && b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

// MarshalJSON writes the string form unless the content came as blocks.
func (c MessageContent) MarshalJSON() ([]byte, error) {
	if c.Parts != nil {
		return json.Marshal(c.Parts)
	}
	return json.Marshal(c.Text)
}

// UnmarshalJSON accepts a string, an array of blocks or null.
func (c *MessageContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return errors.New("empty message content")
	case data[0] == '"':
		c.Parts = nil
		return json.Unmarshal(data, &c.Text)
	case data[0] == '[':
		c.Text = ""
		parts := []ContentPart{}
		if err := json.Unmarshal(data, &parts); err != nil {
			return fmt.Errorf("message content blocks: %w", err)
		}
		c.Parts = parts
		return nil
	case bytes.Equal(data, []byte("null")):
		*c = MessageContent{}
		return nil
	default:
		return errors.New("message content must be a string or an array of content blocks")
	}
}

// ToolCall is a function call made by the assistant. In a stream, the first delta of a call
// carries its id, type and name and later deltas only argument fragments, hence omitempty.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Tool declares a function the model may call.
type Tool struct {
	Type     string       `json:"type"`
	Function FunctionDecl `json:"function"`
}

// FunctionDecl describes a callable function with a JSON-schema parameter object.
type FunctionDecl struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// ChatMessage is one entry of a chat request's messages.
type ChatMessage struct {
	Role       string         `json:"role"`
	Content    MessageContent `json:"content"`
	Name       string         `json:"name,omitempty"`
	ToolCalls  []ToolCall     `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

// ChatCompletionRequest is the body of POST /v1/chat/completions, limited to the fields
// that vLLM-compatible servers act on; other OpenAI fields are accepted and ignored.
type ChatCompletionRequest struct {
	Model               string            `json:"model"`
	Messages            []ChatMessage     `json:"messages"`
	Stream              bool              `json:"stream,omitempty"`
	StreamOptions       *StreamOptions    `json:"stream_options,omitempty"`
	MaxTokens           *int64            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int64            `json:"max_completion_tokens,omitempty"`
	N                   *int64            `json:"n,omitempty"`
	Tools               []Tool            `json:"tools,omitempty"`
	ToolChoice          json.RawMessage   `json:"tool_choice,omitempty"`
	Logprobs            bool              `json:"logprobs,omitempty"`
	TopLogprobs         *int64            `json:"top_logprobs,omitempty"`
	IgnoreEOS           bool              `json:"ignore_eos,omitempty"`
	CacheHitThreshold   *float64          `json:"cache_hit_threshold,omitempty"`
	KVTransferParams    *KVTransferParams `json:"kv_transfer_params,omitempty"`
}

// MaxOutputTokens returns max_completion_tokens, falling back to the deprecated
// max_tokens, as OpenAI and vLLM do; nil means "no limit given".
func (r *ChatCompletionRequest) MaxOutputTokens() *int64 {
	if r.MaxCompletionTokens != nil {
		return r.MaxCompletionTokens
	}
	return r.MaxTokens
}
