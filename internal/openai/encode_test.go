package openai

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// mustMarshal is the reference the hand-written encoders must reproduce byte for byte.
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T): %v", v, err)
	}
	return b
}

type appender interface{ AppendJSON([]byte) []byte }

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	tricky := "a\"b\\c\n\t\r\b\f\x01<tag>&amp;\u2028\u2029é日本\xff\xfe end"
	usage := &Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11, PromptTokensDetails: &PromptTokensDetails{CachedTokens: 4}}
	cases := map[string]appender{
		"chat": &ChatCompletion{ID: "chatcmpl-1", Object: ObjectChatCompletion, Created: 1755, Model: tricky,
			Choices: []ChatCompletionChoice{{Index: 0, FinishReason: FinishStop, Message: AssistantMessage{Role: "assistant", Content: tricky}},
				{Index: 1, FinishReason: FinishToolCalls, Message: AssistantMessage{Role: "assistant", ToolCalls: []ToolCall{{ID: "c1", Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"a":1}`}}}}}},
			Usage: usage, KVTransferParams: &KVTransferParams{DoRemotePrefill: true, RemoteEngineID: ptr("DUMMY"), RemotePort: 1234, TPSize: 1}},
		"chat-nil-choices": &ChatCompletion{ID: "x", Object: ObjectChatCompletion},
		"chunk-role": &ChatCompletionChunk{ID: "chatcmpl-1", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
			Choices: []ChatChunkChoice{{Index: 0, Delta: ChatDelta{Role: "assistant"}}}},
		"chunk-token": &ChatCompletionChunk{ID: "chatcmpl-1", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
			Choices: []ChatChunkChoice{{Index: 2, Delta: ChatDelta{Content: tricky}}}},
		"chunk-both": &ChatCompletionChunk{ID: "chatcmpl-1", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
			Choices: []ChatChunkChoice{{Index: 0, Delta: ChatDelta{Role: "assistant", Content: "x"}}, {Index: 1, FinishReason: ptr(FinishLength)}}},
		"chunk-tools": &ChatCompletionChunk{ID: "chatcmpl-1", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
			Choices: []ChatChunkChoice{{Index: 0, Delta: ChatDelta{ToolCalls: []ToolCall{{Index: ptr(0), ID: "a", Type: "function"}}}}}},
		"chunk-usage": &ChatCompletionChunk{ID: "chatcmpl-1", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
			Usage: usage, Choices: []ChatChunkChoice{}},
		"chunk-nil": &ChatCompletionChunk{},
		"completion": &Completion{ID: "cmpl-1", Object: ObjectTextCompletion, Created: 3, Model: "m",
			Choices: []CompletionChoice{{Index: 0, FinishReason: ptr(FinishLength), Text: tricky}}, Usage: &Usage{PromptTokens: 1}},
		"completion-kv": &Completion{ID: "cmpl-1", KVTransferParams: &KVTransferParams{}},
		"completion-chunk": &CompletionChunk{ID: "cmpl-1", Object: ObjectTextCompletion, Created: 3, Model: "m",
			Choices: []CompletionChoice{{Index: 0, Text: "tok "}}},
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			got := v.AppendJSON([]byte("prefix"))
			want := append([]byte("prefix"), mustMarshal(t, v)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendJSON differs from encoding/json\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "<>&", "\u2028\u2029", "\xff", "é\xc3", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		if want := mustMarshal(t, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestMessageContentShapes(t *testing.T) {
	var m ChatMessage
	in := `{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"there"}]}`
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if got := m.Content.PlainText(); got != "hi there" {
		t.Fatalf("PlainText = %q", got)
	}
	out := mustMarshal(t, m)
	if !strings.Contains(string(out), `"content":[{"type":"text","text":"hi"}`) {
		t.Fatalf("block content did not round-trip: %s", out)
	}
	if err := json.Unmarshal([]byte(`{"role":"user","content":"plain"}`), &m); err != nil || m.Content.PlainText() != "plain" || m.Content.Parts != nil {
		t.Fatalf("string content: %+v %v", m.Content, err)
	}
	if err := json.Unmarshal([]byte(`{"role":"user","content":5}`), &m); err == nil {
		t.Fatal("numeric content accepted")
	}
}

func TestPromptShapes(t *testing.T) {
	cases := []struct {
		in           string
		texts, lists int
	}{
		{`"a b"`, 1, 0},
		{`["a","b"]`, 2, 0},
		{`[1,2,3]`, 0, 1},
		{`[[1,2],[3]]`, 0, 2},
		{`[]`, 0, 0},
	}
	for _, c := range cases {
		var p Prompt
		if err := json.Unmarshal([]byte(c.in), &p); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if len(p.Texts) != c.texts || len(p.Tokens) != c.lists {
			t.Fatalf("%s: texts=%d lists=%d", c.in, len(p.Texts), len(p.Tokens))
		}
		if out := mustMarshal(t, p); string(out) != c.in {
			t.Fatalf("%s did not round-trip: %s", c.in, out)
		}
	}
	for _, bad := range []string{`5`, `{"a":1}`, `[true]`, `["a",1]`} {
		var p Prompt
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func TestTypeForStatus(t *testing.T) {
	for status, want := range map[int]string{400: TypeBadRequest, 401: TypeAuthentication, 403: TypePermissionDenied,
		404: TypeNotFound, 422: TypeUnprocessableEntity, 429: TypeRateLimit, 500: TypeInternalServer, 503: TypeInternalServer, 418: TypeAPIConnection} {
		if got := TypeForStatus(status); got != want {
			t.Errorf("TypeForStatus(%d) = %s, want %s", status, got, want)
		}
	}
	env := NewStatusError(404, "The model `x` does not exist.", "model")
	if got := string(env.JSON()); got != `{"error":{"message":"The model `+"`x`"+` does not exist.","type":"NotFoundError","param":"model","code":404}}` {
		t.Fatalf("envelope = %s", got)
	}
}
