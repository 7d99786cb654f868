package epp

import (
	"testing"
)

func TestParseBodyReserialisesWithSortedKeys(t *testing.T) {
	in := `{ "stream": true, "model": "m", "messages": [ {"role": "user", "content": "a <b> & c"} ],
	  "max_tokens": 12345678901234567890, "model": "m2" }`
	p, err := parseBody("/v1/chat/completions", []byte(in), "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"max_tokens":12345678901234567890,"messages":[{"role":"user","content":"a <b> & c"}],"model":"m2","stream":true}`
	if string(p.out) != want {
		t.Errorf("out\n%s\nwant\n%s", p.out, want)
	}
	if p.model != "m2" || p.targetModel != "m2" {
		t.Errorf("model %q/%q; the last duplicate key must win", p.model, p.targetModel)
	}
	if string(p.prompt) != `[{"role":"user","content":"a <b> & c"}]` {
		t.Errorf("chat prompt %s", p.prompt)
	}
}

func TestParseBodyRewriteSaltAndPrompts(t *testing.T) {
	p, err := parseBody("/v1/completions?x=1", []byte(`{"model":"base","prompt":"hello\nworld","cache_salt":"s"}`), "lora-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.model != "base" || p.targetModel != "lora-1" || p.salt != "s" || string(p.prompt) != "hello\nworld" {
		t.Errorf("%+v", p)
	}
	if string(p.out) != `{"cache_salt":"s","model":"lora-1","prompt":"hello\nworld"}` {
		t.Errorf("out %s", p.out)
	}
	p, err = parseBody("/v1/completions", []byte(`{"model":"m","prompt":["a", "b"]}`), "")
	if err != nil || string(p.prompt) != `["a","b"]` {
		t.Errorf("array prompt %s %v", p.prompt, err)
	}
	p, err = parseBody("/v1/embeddings", []byte(`{"model":"m","input":"x"}`), "")
	if err != nil || string(p.prompt) != `"x"` {
		t.Errorf("embeddings prompt %s %v", p.prompt, err)
	}
}

func TestParseBodyRejects(t *testing.T) {
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m",}`},
		{"/v1/chat/completions", `["model"]`},
		{"/v1/chat/completions", `{"model":null}`},
		{"/v1/chat/completions", `{"model":"m"} {}`},
		{"/v2/unknown", `{"model":"m"}`},
		{"/v1/chat/completions", ``},
	} {
		if _, err := parseBody(tc.path, []byte(tc.body), ""); err == nil || err.status != 400 {
			t.Errorf("%s %q: %v", tc.path, tc.body, err)
		}
	}
}
