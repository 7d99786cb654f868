package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ChatRequest is one prompt for Chat.
type ChatRequest struct {
	URL, APIKey, Model string
	Prompt             string
	MaxTokens          int
	// RequestID is sent as X-Request-Id, which the gateway keeps and the endpoint picker
	// records with its decision, so the caller can find which pod served the answer.
	RequestID string
	Timeout   time.Duration
	// Headers are extra request headers (see ParseHeaders).
	Headers http.Header
}

// ChatResult is what came back.
type ChatResult struct {
	Content   string
	TTFT      time.Duration
	Total     time.Duration
	Tokens    int
	RequestID string
	// Pod is the serving pod when the answer named it (X-Inference-Pod, set by simulators
	// that know their pod name); empty otherwise.
	Pod string
}

// Chat streams one answer, calling onText with each piece of content as it arrives.
func Chat(ctx context.Context, r ChatRequest, onText func(string)) (*ChatResult, error) {
	if err := CheckTarget(r.URL, nil); err != nil {
		return nil, err
	}
	if r.Model == "" {
		return nil, errors.New("no model: name the model to chat with")
	}
	if err := checkHeaders(r.Headers); err != nil {
		return nil, err
	}
	if r.MaxTokens <= 0 {
		r.MaxTokens = 128
	}
	if r.Timeout <= 0 {
		r.Timeout = 60 * time.Second
	}
	body, err := json.Marshal(map[string]any{
		"model": r.Model, "messages": []message{{Role: "user", Content: r.Prompt}},
		"max_tokens": r.MaxTokens, "stream": true, "stream_options": streamOptions{IncludeUsage: true},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.URL, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	addHeaders(req, r.Headers)
	req.Header.Set("Content-Type", "application/json")
	if r.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.APIKey)
	}
	if r.RequestID != "" {
		req.Header.Set("X-Request-Id", r.RequestID)
	}
	client := newHTTPClient(Config{Concurrency: 1})
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %s", req.URL, transportFailure(err))
	}
	defer resp.Body.Close()
	res := &ChatResult{RequestID: resp.Header.Get("X-Request-Id"), Pod: resp.Header.Get("X-Inference-Pod")}
	if res.RequestID == "" {
		res.RequestID = r.RequestID
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return res, fmt.Errorf("the gateway answered %s: %s", resp.Status, errorMessage(b))
	}
	var content strings.Builder
	br := bufio.NewReaderSize(resp.Body, 32<<10)
	done := false
	for !done {
		line, rerr := readLine(br)
		if payload, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			payload = bytes.TrimSpace(payload)
			if res.TTFT == 0 {
				res.TTFT = time.Since(start)
			}
			if string(payload) == "[DONE]" {
				done = true
				break
			}
			var chunk streamChunk
			if err := json.Unmarshal(payload, &chunk); err != nil {
				return res, fmt.Errorf("malformed SSE chunk %q", truncate(string(payload), 120))
			}
			if chunk.Error != nil {
				return res, fmt.Errorf("the model failed mid-answer: %s", chunk.Error.Message)
			}
			if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
				content.WriteString(chunk.Choices[0].Delta.Content)
				if onText != nil {
					onText(chunk.Choices[0].Delta.Content)
				}
			}
			if chunk.Usage != nil {
				res.Tokens = chunk.Usage.CompletionTokens
			}
		}
		if rerr != nil {
			if !done {
				return res, fmt.Errorf("the answer broke off: %s", transportFailure(rerr))
			}
		}
	}
	res.Content = content.String()
	res.Total = time.Since(start)
	return res, nil
}
