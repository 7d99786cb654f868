package epp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/pretty"
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
	// out is the body to forward: re-serialised compactly with sorted top-level keys, as
	// upstream's Go encoder produces it (§7 gotcha 3).
	out []byte
}

// parseBody validates and re-serialises a request body. rewrite, when set, replaces the model
// (x-gateway-model-name-rewrite).
//
// Only the top level is taken apart; nested values are copied as compact raw JSON. With
// encoding/json, decoding an 8 KB prompt into Go strings and encoding it again cost more than
// the whole scheduling decision; gjson validates and splits the body in one fast pass. Visible
// differences from upstream's re-encoding: keys inside nested objects keep the client's order,
// and <, >, & inside strings are not rewritten as \u003c escapes. Both are the same JSON.
func parseBody(path string, body []byte, rewrite string) (parsedBody, *reqError) {
	var p parsedBody
	kind := kindOf(path)
	if kind == apiUnknown {
		return p, badRequest(fmt.Sprintf("unsupported API path %q", path))
	}
	if !gjson.ValidBytes(body) {
		return p, badRequest("failed to parse request body: invalid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return p, badRequest("failed to parse request body: not a JSON object")
	}
	type field struct {
		key string
		val gjson.Result
	}
	fields := make([]field, 0, 12)
	root.ForEach(func(k, v gjson.Result) bool {
		fields = append(fields, field{k.String(), v})
		return true
	})
	// Sorted keys as Go's encoder writes a map; for a repeated key the last one wins, as when
	// decoding into a map.
	slices.SortStableFunc(fields, func(a, b field) int { return strings.Compare(a.key, b.key) })
	uniq := fields[:0]
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].key == f.key {
			continue
		}
		uniq = append(uniq, f)
	}
	fields = uniq
	get := func(key string) gjson.Result {
		i, ok := slices.BinarySearchFunc(fields, key, func(f field, k string) int { return strings.Compare(f.key, k) })
		if !ok {
			return gjson.Result{}
		}
		return fields[i].val
	}

	model := get("model")
	if model.Type != gjson.String {
		return p, badRequest("model not found in request body")
	}
	p.model, p.targetModel = model.Str, model.Str
	if salt := get("cache_salt"); salt.Type == gjson.String {
		p.salt = salt.Str
	}
	switch kind {
	case apiCompletions:
		if pr := get("prompt"); pr.Type == gjson.String {
			p.prompt = []byte(pr.Str)
		} else {
			p.prompt = compact(nil, pr.Raw)
		}
	case apiChat:
		p.prompt = compact(nil, get("messages").Raw)
	case apiResponses:
		for _, k := range []string{"instructions", "tools", "input"} {
			p.prompt = compact(p.prompt, get(k).Raw)
		}
	case apiEmbeddings:
		p.prompt = compact(nil, get("input").Raw)
	}

	out := make([]byte, 0, len(body)+len(rewrite)+2)
	out = append(out, '{')
	for i, f := range fields {
		if i > 0 {
			out = append(out, ',')
		}
		key, _ := json.Marshal(f.key) // a string always encodes
		out = append(out, key...)
		out = append(out, ':')
		if f.key == "model" && rewrite != "" {
			v, _ := json.Marshal(rewrite)
			out = append(out, v...)
			continue
		}
		out = compact(out, f.val.Raw)
	}
	p.out = append(out, '}')
	if rewrite != "" {
		p.targetModel = rewrite
	}
	return p, nil
}

// compact appends raw JSON to dst without insignificant whitespace.
func compact(dst []byte, raw string) []byte {
	start := len(dst)
	dst = append(dst, raw...)
	return append(dst[:start], pretty.UglyInPlace(dst[start:])...)
}
