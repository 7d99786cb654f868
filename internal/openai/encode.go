package openai

import (
	"strconv"
	"unicode/utf8"
)

// The AppendJSON methods below produce exactly the bytes encoding/json produces for the
// same value (encode_test.go checks this), without reflection or allocation, because the
// simulator writes one of these per request or per streamed token on its hot path.

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal, escaping the way encoding/json does:
// HTML-sensitive characters and U+2028/U+2029 are \u-escaped and invalid UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, key...)
	return strconv.AppendInt(b, v, 10)
}

func appendStringField(b []byte, key, v string) []byte {
	b = append(b, key...)
	return AppendString(b, v)
}

func appendNullableString(b []byte, key string, v *string) []byte {
	b = append(b, key...)
	if v == nil {
		return append(b, "null"...)
	}
	return AppendString(b, *v)
}

// appendArray writes a JSON array (null for a nil slice, like encoding/json) whose elements
// elem encodes.
func appendArray[T any](b []byte, items []T, elem func([]byte, *T) []byte) []byte {
	if items == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, &items[i])
	}
	return append(b, ']')
}

// appendHeader writes the fields every response and chunk starts with.
func appendHeader(b []byte, id, object string, created int64, model string) []byte {
	b = appendStringField(b, `{"id":`, id)
	b = appendStringField(b, `,"object":`, object)
	b = appendInt(b, `,"created":`, created)
	return appendStringField(b, `,"model":`, model)
}

// appendTail closes a non-streaming response with its optional usage and P/D fields.
func appendTail(b []byte, u *Usage, kv *KVTransferParams) []byte {
	if u != nil {
		b = append(b, `,"usage":`...)
		b = u.AppendJSON(b)
	}
	if kv != nil {
		b = append(b, `,"kv_transfer_params":`...)
		b = appendMarshal(b, kv)
	}
	return append(b, '}')
}

// AppendJSON appends the usage object, or null for a nil receiver.
func (u *Usage) AppendJSON(b []byte) []byte {
	if u == nil {
		return append(b, "null"...)
	}
	b = appendInt(b, `{"prompt_tokens":`, u.PromptTokens)
	b = appendInt(b, `,"completion_tokens":`, u.CompletionTokens)
	b = appendInt(b, `,"total_tokens":`, u.TotalTokens)
	if u.PromptTokensDetails != nil {
		b = appendInt(b, `,"prompt_tokens_details":{"cached_tokens":`, u.PromptTokensDetails.CachedTokens)
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendJSON appends the JSON encoding of c.
func (c *ChatCompletion) AppendJSON(b []byte) []byte {
	b = appendHeader(b, c.ID, c.Object, c.Created, c.Model)
	b = append(b, `,"choices":`...)
	b = appendArray(b, c.Choices, func(b []byte, ch *ChatCompletionChoice) []byte {
		b = appendInt(b, `{"index":`, int64(ch.Index))
		b = appendStringField(b, `,"finish_reason":`, ch.FinishReason)
		b = appendStringField(b, `,"message":{"role":`, ch.Message.Role)
		b = appendStringField(b, `,"content":`, ch.Message.Content)
		if len(ch.Message.ToolCalls) > 0 {
			b = append(b, `,"tool_calls":`...)
			b = appendMarshal(b, ch.Message.ToolCalls)
		}
		return append(b, "}}"...)
	})
	return appendTail(b, c.Usage, c.KVTransferParams)
}

// AppendJSON appends the JSON encoding of c.
func (c *ChatCompletionChunk) AppendJSON(b []byte) []byte {
	b = appendHeader(b, c.ID, c.Object, c.Created, c.Model)
	b = append(b, `,"usage":`...)
	b = c.Usage.AppendJSON(b)
	b = append(b, `,"choices":`...)
	b = appendArray(b, c.Choices, func(b []byte, ch *ChatChunkChoice) []byte {
		b = appendInt(b, `{"index":`, int64(ch.Index))
		b = appendNullableString(b, `,"finish_reason":`, ch.FinishReason)
		b = append(b, `,"delta":{`...)
		sep := ""
		if ch.Delta.Role != "" {
			b = appendStringField(b, `"role":`, ch.Delta.Role)
			sep = ","
		}
		if ch.Delta.Content != "" {
			b = appendStringField(b, sep+`"content":`, ch.Delta.Content)
			sep = ","
		}
		if len(ch.Delta.ToolCalls) > 0 {
			b = append(b, sep+`"tool_calls":`...)
			b = appendMarshal(b, ch.Delta.ToolCalls)
		}
		return append(b, "}}"...)
	})
	return append(b, '}')
}

func appendCompletionChoices(b []byte, choices []CompletionChoice) []byte {
	b = append(b, `,"choices":`...)
	return appendArray(b, choices, func(b []byte, ch *CompletionChoice) []byte {
		b = appendInt(b, `{"index":`, int64(ch.Index))
		b = appendNullableString(b, `,"finish_reason":`, ch.FinishReason)
		b = appendStringField(b, `,"text":`, ch.Text)
		return append(b, '}')
	})
}

// AppendJSON appends the JSON encoding of c.
func (c *Completion) AppendJSON(b []byte) []byte {
	b = appendHeader(b, c.ID, c.Object, c.Created, c.Model)
	b = appendCompletionChoices(b, c.Choices)
	return appendTail(b, c.Usage, c.KVTransferParams)
}

// AppendJSON appends the JSON encoding of c.
func (c *CompletionChunk) AppendJSON(b []byte) []byte {
	b = appendHeader(b, c.ID, c.Object, c.Created, c.Model)
	b = append(b, `,"usage":`...)
	b = c.Usage.AppendJSON(b)
	b = appendCompletionChoices(b, c.Choices)
	return append(b, '}')
}
