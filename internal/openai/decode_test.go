package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

var chatDecodeSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"ignore_eos":true}`,
	`{"model":"m","messages":[{"role":"system","content":"a\nb\t\"q\" \u00e9 \ud83d\ude00 \/"},{"role":"user","content":"x","name":"n"}],"stream":true,"stream_options":{"include_usage":true},"n":2,"max_completion_tokens":5,"logprobs":false,"top_logprobs":0,"cache_hit_threshold":0.25,"temperature":0.7,"extra":{"a":[1,2,{"b":null}]}}`,
	`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"blocks"}]}]}`,
	`{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"}`,
	`{"Model":"m","messages":[]}`,
	`{"model":"m","model":"n"}`,
	`{"model":null}`,
	`{"model":"m","max_tokens":1.5}`,
	`{"model":"m","max_tokens":1e2}`,
	`{"model":"m","max_tokens":99999999999999999999}`,
	`{"model":"m","cache_hit_threshold":1e400}`,
	`{"model":"\ud800"}`,
	"{\"model\":\"\xff\"}",
	`{"model":"m"} x`,
	`{"model":"m",}`,
	`{"model":"m","x":01}`,
	`{"model":"m","x":-}`,
	`{"model":"m","x":[1,]}`,
	` {"model" : "m" , "messages" : [ ] } `,
	`{}`, `[]`, `null`, ``, `{`, `"s"`, "{}\x00",
}

// decodeSame checks the fast path against encoding/json: if the fast parser accepts a
// document, encoding/json must accept it too and produce an identical value.
func decodeSame(t *testing.T, doc string) {
	var fast ChatCompletionRequest
	if !decodeChatFast([]byte(doc), &fast) {
		return
	}
	var slow ChatCompletionRequest
	if err := json.Unmarshal([]byte(doc), &slow); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json rejects it: %v", doc, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("decoding %q differs:\nfast %#v\nslow %#v", doc, fast, slow)
	}
}

func TestDecodeChatFastMatchesEncodingJSON(t *testing.T) {
	accepted := 0
	for _, doc := range chatDecodeSeeds {
		decodeSame(t, doc)
		var r ChatCompletionRequest
		if decodeChatFast([]byte(doc), &r) {
			accepted++
		}
		// The public entry point must agree with encoding/json on success and failure.
		var want ChatCompletionRequest
		wantErr := json.Unmarshal([]byte(doc), &want)
		var got ChatCompletionRequest
		gotErr := DecodeChatCompletionRequest([]byte(doc), &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Errorf("%q: error %v, encoding/json says %v", doc, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%q: value differs", doc)
		}
	}
	// The common shapes must take the fast path, or it is pointless.
	if accepted < 4 {
		t.Errorf("fast path accepted only %d seeds", accepted)
	}
	var r ChatCompletionRequest
	if !decodeChatFast([]byte(chatDecodeSeeds[1]), &r) || r.Messages[0].Content.Text != "a\nb\t\"q\" é 😀 /" || *r.CacheHitThreshold != 0.25 {
		t.Errorf("escapes or numbers decoded wrongly: %#v", r)
	}
}

func FuzzDecodeChatCompletionRequest(f *testing.F) {
	for _, s := range chatDecodeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) { decodeSame(t, doc) })
}
