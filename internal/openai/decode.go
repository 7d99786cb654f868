package openai

import (
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeChatCompletionRequest decodes a chat request like json.Unmarshal would, but first
// tries a reflection-free parser for the common shape (string contents, scalar options).
// Anything that parser does not fully understand (content blocks, tools, nulls, duplicate
// or case-folded keys, escapes it cannot map exactly, any syntax error) goes to
// encoding/json, so results and error messages are always those of encoding/json;
// decode_test.go checks this differentially.
func DecodeChatCompletionRequest(data []byte, r *ChatCompletionRequest) error {
	var fast ChatCompletionRequest
	if decodeChatFast(data, &fast) {
		*r = fast
		return nil
	}
	*r = ChatCompletionRequest{}
	return json.Unmarshal(data, r)
}

type fastScanner struct {
	b []byte
	i int
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *fastScanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *fastScanner) consume(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// str parses a string literal. It refuses invalid UTF-8 and lone surrogates, which
// encoding/json silently replaces with U+FFFD.
func (s *fastScanner) str() (string, bool) {
	if !s.consume('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if !utf8.Valid(raw) {
				return "", false
			}
			return string(raw), true
		case c == '\\':
			return s.escapedStr(start)
		case c < 0x20:
			return "", false
		}
		s.i++
	}
	return "", false
}

func hexVal(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v rune
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case '0' <= c && c <= '9':
			v |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			v |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			v |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func (s *fastScanner) escapedStr(start int) (string, bool) {
	out := make([]byte, 0, s.i-start+16)
	out = append(out, s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return "", false
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hexVal(s.b[s.i:])
			if !ok {
				return "", false
			}
			s.i += 4
			if utf16.IsSurrogate(r) {
				if s.i+6 > len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
					return "", false
				}
				r2, ok := hexVal(s.b[s.i+2:])
				if !ok {
					return "", false
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", false
				}
				s.i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

// number returns the literal of a JSON number, checked against the JSON grammar.
func (s *fastScanner) number() ([]byte, bool) {
	s.ws()
	start := s.i
	b := s.b
	if s.i < len(b) && b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(b) && b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return nil, false
	}
	if s.i < len(b) && b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, false
		}
	}
	if s.i < len(b) && (b[s.i] == 'e' || b[s.i] == 'E') {
		s.i++
		if s.i < len(b) && (b[s.i] == '+' || b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return b[start:s.i], true
}

func (s *fastScanner) int64() (*int64, bool) {
	lit, ok := s.number()
	if !ok {
		return nil, false
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return nil, false
	}
	return &v, true
}

func (s *fastScanner) float64() (*float64, bool) {
	lit, ok := s.number()
	if !ok {
		return nil, false
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, false
	}
	return &v, true
}

func (s *fastScanner) literal(word string) bool {
	s.ws()
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

func (s *fastScanner) bool() (bool, bool) {
	switch s.peek() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, false
}

// skip validates and skips any value; depth bounds recursion on hostile input.
func (s *fastScanner) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	switch s.peek() {
	case '"':
		_, ok := s.str()
		return ok
	case '{':
		s.i++
		return s.sequence('}', func() bool {
			_, ok := s.str()
			return ok && s.consume(':') && s.skip(depth+1)
		})
	case '[':
		s.i++
		return s.sequence(']', func() bool { return s.skip(depth + 1) })
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		_, ok := s.number()
		return ok
	}
}

// sequence parses comma-separated elements up to the closing byte; the opening one has
// been consumed.
func (s *fastScanner) sequence(closing byte, elem func() bool) bool {
	if s.consume(closing) {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.consume(closing) {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// object walks the members of an object, calling member for each key. Keys that differ
// from a field name only by case are refused, because encoding/json would match them.
func (s *fastScanner) object(fields []string, member func(key string) bool) bool {
	if !s.consume('{') {
		return false
	}
	var seen uint64
	return s.sequence('}', func() bool {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return false
		}
		known := -1
		for i, f := range fields {
			if f == key {
				known = i
				break
			}
			if equalFoldASCII(f, key) {
				return false
			}
		}
		if known >= 0 {
			// A repeated key would make encoding/json merge values; leave that to it.
			if seen&(1<<known) != 0 || s.peek() == 'n' || !member(key) {
				return false
			}
			seen |= 1 << known
			return true
		}
		return s.skip(0)
	})
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Field names of the request structs, including those the fast path refuses to decode.
var (
	chatFields = []string{"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
		"n", "tools", "tool_choice", "logprobs", "top_logprobs", "ignore_eos", "cache_hit_threshold", "kv_transfer_params"}
	messageFields       = []string{"role", "content", "name", "tool_calls", "tool_call_id"}
	streamOptionsFields = []string{"include_usage"}
)

func decodeChatFast(data []byte, r *ChatCompletionRequest) bool {
	s := &fastScanner{b: data}
	ok := s.object(chatFields, func(key string) bool {
		var ok bool
		switch key {
		case "model":
			r.Model, ok = s.str()
		case "messages":
			r.Messages, ok = s.messages()
		case "stream":
			r.Stream, ok = s.bool()
		case "stream_options":
			r.StreamOptions = &StreamOptions{}
			ok = s.object(streamOptionsFields, func(string) bool {
				var ok bool
				r.StreamOptions.IncludeUsage, ok = s.bool()
				return ok
			})
		case "max_tokens":
			r.MaxTokens, ok = s.int64()
		case "max_completion_tokens":
			r.MaxCompletionTokens, ok = s.int64()
		case "n":
			r.N, ok = s.int64()
		case "top_logprobs":
			r.TopLogprobs, ok = s.int64()
		case "logprobs":
			r.Logprobs, ok = s.bool()
		case "ignore_eos":
			r.IgnoreEOS, ok = s.bool()
		case "cache_hit_threshold":
			r.CacheHitThreshold, ok = s.float64()
		}
		return ok // tools, tool_choice, kv_transfer_params: left to encoding/json
	})
	s.ws()
	return ok && s.i == len(s.b)
}

func (s *fastScanner) messages() ([]ChatMessage, bool) {
	if !s.consume('[') {
		return nil, false
	}
	msgs := make([]ChatMessage, 0, 4)
	ok := s.sequence(']', func() bool {
		var m ChatMessage
		ok := s.object(messageFields, func(key string) bool {
			var ok bool
			switch key {
			case "role":
				m.Role, ok = s.str()
			case "content":
				m.Content.Text, ok = s.str()
			case "name":
				m.Name, ok = s.str()
			case "tool_call_id":
				m.ToolCallID, ok = s.str()
			}
			return ok
		})
		msgs = append(msgs, m)
		return ok
	})
	return msgs, ok
}
