package openai

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Prompt is the prompt of a text completion. OpenAI accepts four shapes: a string, an array
// of strings, an array of token ids, or an array of token-id arrays; each element of the
// array forms is a separate prompt that gets its own choice.
type Prompt struct {
	// Texts holds the string forms (one element for a plain string).
	Texts []string
	// Tokens holds the token-id forms (one element for a flat id array).
	Tokens [][]int64
	// form remembers the JSON shape so a marshalled prompt round-trips.
	form promptForm
}

type promptForm uint8

const (
	promptString promptForm = iota
	promptStrings
	promptTokens
	promptTokenLists
)

// TextPrompt builds the plain-string form.
func TextPrompt(s string) Prompt { return Prompt{Texts: []string{s}, form: promptString} }

// Len is the number of separate prompts.
func (p Prompt) Len() int { return len(p.Texts) + len(p.Tokens) }

// MarshalJSON writes the prompt back in the shape it was given.
func (p Prompt) MarshalJSON() ([]byte, error) {
	switch p.form {
	case promptStrings:
		return json.Marshal(p.Texts)
	case promptTokens:
		if len(p.Tokens) == 1 {
			return json.Marshal(p.Tokens[0])
		}
		return json.Marshal(p.Tokens)
	case promptTokenLists:
		return json.Marshal(p.Tokens)
	default:
		if len(p.Texts) == 0 {
			return []byte(`""`), nil
		}
		return json.Marshal(p.Texts[0])
	}
}

// UnmarshalJSON decodes any of the four prompt shapes.
func (p *Prompt) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	*p = Prompt{}
	if len(data) == 0 {
		return errors.New("empty prompt")
	}
	switch data[0] {
	case '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*p = TextPrompt(s)
		return nil
	case '[':
	default:
		return errors.New("prompt must be a string, an array of strings, or an array of token ids")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		p.form = promptStrings
		p.Texts = []string{}
		return nil
	}
	switch first := bytes.TrimSpace(raw[0]); {
	case len(first) > 0 && first[0] == '"':
		p.form = promptStrings
		return json.Unmarshal(data, &p.Texts)
	case len(first) > 0 && first[0] == '[':
		p.form = promptTokenLists
		return json.Unmarshal(data, &p.Tokens)
	default:
		var ids []int64
		if err := json.Unmarshal(data, &ids); err != nil {
			return err
		}
		p.form = promptTokens
		p.Tokens = [][]int64{ids}
		return nil
	}
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model             string            `json:"model"`
	Prompt            Prompt            `json:"prompt"`
	Stream            bool              `json:"stream,omitempty"`
	StreamOptions     *StreamOptions    `json:"stream_options,omitempty"`
	MaxTokens         *int64            `json:"max_tokens,omitempty"`
	N                 *int64            `json:"n,omitempty"`
	Echo              bool              `json:"echo,omitempty"`
	Logprobs          *int64            `json:"logprobs,omitempty"`
	IgnoreEOS         bool              `json:"ignore_eos,omitempty"`
	CacheHitThreshold *float64          `json:"cache_hit_threshold,omitempty"`
	KVTransferParams  *KVTransferParams `json:"kv_transfer_params,omitempty"`
}
