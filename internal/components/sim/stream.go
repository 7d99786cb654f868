package sim

import (
	"errors"
	"net/http"
	"sync"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// streamSink writes a job's tokens as Server-Sent Events (facts §1.4). Headers are sent with
// the first event, so an error that happens earlier (queue full, KV cache too small) still
// gets its real status code and JSON body.
type streamSink struct {
	mu       sync.Mutex
	w        http.ResponseWriter
	rc       *http.ResponseController
	j        *job
	started  bool
	roleSent []bool
	buf      []byte
	err      error
}

func newStreamSink(w http.ResponseWriter, j *job) *streamSink {
	return &streamSink{w: w, rc: http.NewResponseController(w), j: j, roleSent: make([]bool, j.subRequests()),
		buf: make([]byte, 0, 512)}
}

func (s *streamSink) beginLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	h["Connection"] = []string{"keep-alive"}
	s.w.WriteHeader(http.StatusOK)
}

// frameLocked writes "data: <json>\n\n" built by enc and flushes it to the client.
func (s *streamSink) frameLocked(enc func([]byte) []byte) error {
	if s.err != nil {
		return s.err
	}
	s.beginLocked()
	b := append(s.buf[:0], "data: "...)
	b = enc(b)
	b = append(b, '\n', '\n')
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

func (s *streamSink) chatChunk(choice int, finish *string, delta openai.ChatDelta) error {
	choices := [1]openai.ChatChunkChoice{{Index: choice, FinishReason: finish, Delta: delta}}
	c := openai.ChatCompletionChunk{ID: s.j.id, Object: openai.ObjectChatCompletionChunk, Created: s.j.created,
		Model: s.j.model, Choices: choices[:]}
	return s.frameLocked(c.AppendJSON)
}

func (s *streamSink) textChunk(choice int, finish *string, text string) error {
	choices := [1]openai.CompletionChoice{{Index: choice, FinishReason: finish, Text: text}}
	c := openai.CompletionChunk{ID: s.j.id, Object: openai.ObjectTextCompletion, Created: s.j.created,
		Model: s.j.model, Choices: choices[:]}
	return s.frameLocked(c.AppendJSON)
}

// roleLocked sends the chat stream's opening chunk for a choice: a delta with only the role.
func (s *streamSink) roleLocked(choice int) error {
	if !s.j.chat || s.roleSent[choice] {
		return nil
	}
	s.roleSent[choice] = true
	return s.chatChunk(choice, nil, openai.ChatDelta{Role: "assistant"})
}

func (s *streamSink) token(choice int, tok string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roleLocked(choice); err != nil {
		return err
	}
	if s.j.chat {
		return s.chatChunk(choice, nil, openai.ChatDelta{Content: tok})
	}
	return s.textChunk(choice, nil, tok)
}

func (s *streamSink) toolDelta(choice int, delta openai.ToolCall, finish *string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roleLocked(choice); err != nil {
		return err
	}
	return s.chatChunk(choice, finish, openai.ChatDelta{ToolCalls: []openai.ToolCall{delta}})
}

func (s *streamSink) finish(choice int, reason string, _ int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roleLocked(choice); err != nil {
		return err
	}
	if reason == openai.FinishToolCalls {
		return nil // already on the last tool-call chunk
	}
	if s.j.chat {
		return s.chatChunk(choice, &reason, openai.ChatDelta{})
	}
	return s.textChunk(choice, &reason, "")
}

// end closes the stream: usage chunk if asked for, then [DONE]. An error before the first
// event becomes a normal error response; after it, an error event followed by [DONE].
func (s *streamSink) end(j *job, results []subResult, runErr error, srv *Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var apiErr *apiError
	isAPIErr := errors.As(runErr, &apiErr)
	if runErr != nil && !s.started {
		if isAPIErr {
			srv.writeError(s.w, apiErr)
		}
		return
	}
	if runErr != nil {
		if isAPIErr {
			_ = s.frameLocked(func(b []byte) []byte { return append(b, apiErr.envelope().JSON()...) })
			_ = s.frameLocked(func(b []byte) []byte { return append(b, "[DONE]"...) })
		}
		return
	}
	if j.includeUsage {
		usage := j.usage(results)
		u := &usage
		if j.chat {
			c := openai.ChatCompletionChunk{ID: j.id, Object: openai.ObjectChatCompletionChunk, Created: j.created,
				Model: j.model, Usage: u, Choices: []openai.ChatChunkChoice{}}
			_ = s.frameLocked(c.AppendJSON)
		} else {
			c := openai.CompletionChunk{ID: j.id, Object: openai.ObjectTextCompletion, Created: j.created,
				Model: j.model, Usage: u, Choices: []openai.CompletionChoice{}}
			_ = s.frameLocked(c.AppendJSON)
		}
	}
	_ = s.frameLocked(func(b []byte) []byte { return append(b, "[DONE]"...) })
}
