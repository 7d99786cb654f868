package epp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// apiKind is the OpenAI API a request targets, chosen by the suffix of :path as upstream's
// OpenAI parser does (llm-d-facts §2.2 step 3).
type apiKind int

const (
	apiUnknown apiKind = iota
	apiChat
	apiCompletions
	apiResponses
	apiConversations
	apiEmbeddings
)

func kindOf(path string) apiKind {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return apiChat
	case strings.HasSuffix(path, "/completions"):
		return apiCompletions
	case strings.HasSuffix(path, "/responses"):
		return apiResponses
	case strings.HasSuffix(path, "/conversations"):
		return apiConversations
	case strings.HasSuffix(path, "/embeddings"):
		return apiEmbeddings
	}
	return apiUnknown
}

// parsedBody is what the picker takes from a request body.
type parsedBody struct {
	model       string
	targetModel string
	// prompt is the prefix-hash input: the prompt text for completions, the JSON of the messages
	// array for chat (GAIE v1.4+ inputs, llm-d-facts §2.10 and §7 gotcha 8).
	prompt []byte
	salt   string
	// out is the body to forward: re-serialised with sorted keys, as upstream does (§7 gotcha 3).
	out []byte
}

// parseBody validates and re-serialises a request body. rewrite, when set, replaces the model
// (x-gateway-model-name-rewrite).
func parseBody(path string, body []byte, rewrite string) (parsedBody, *reqError) {
	var p parsedBody
	kind := kindOf(path)
	if kind == apiUnknown {
		return p, badRequest(fmt.Sprintf("unsupported API path %q", path))
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	// Numbers stay as written: a float64 round trip would alter large integers (seeds, ids).
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return p, badRequest("failed to parse request body: " + err.Error())
	}
	if dec.More() {
		return p, badRequest("failed to parse request body: trailing data after the JSON object")
	}
	model, ok := m["model"].(string)
	if !ok {
		return p, badRequest("model not found in request body")
	}
	p.model, p.targetModel = model, model
	if rewrite != "" {
		p.targetModel = rewrite
		m["model"] = rewrite
	}
	if salt, ok := m["cache_salt"].(string); ok {
		p.salt = salt
	}
	var err error
	switch kind {
	case apiCompletions:
		if s, ok := m["prompt"].(string); ok {
			p.prompt = []byte(s)
		} else if m["prompt"] != nil {
			p.prompt, err = json.Marshal(m["prompt"])
		}
	case apiChat:
		if m["messages"] != nil {
			p.prompt, err = json.Marshal(m["messages"])
		}
	case apiResponses:
		p.prompt, err = json.Marshal(struct {
			Instructions any `json:"instructions,omitempty"`
			Tools        any `json:"tools,omitempty"`
			Input        any `json:"input,omitempty"`
		}{m["instructions"], m["tools"], m["input"]})
	case apiEmbeddings:
		if m["input"] != nil {
			p.prompt, err = json.Marshal(m["input"])
		}
	}
	if err != nil {
		return p, &reqError{status: http.StatusInternalServerError, code: codeInternal, msg: "encode prompt: " + err.Error()}
	}
	if p.out, err = json.Marshal(m); err != nil {
		return p, &reqError{status: http.StatusInternalServerError, code: codeInternal, msg: "encode body: " + err.Error()}
	}
	return p, nil
}
