package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// The endpoints around inference: model list, tokenizer, health and sleep mode.

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	list := openai.ModelList{Object: openai.ObjectList}
	created := s.started.Unix()
	names := s.cfg.ServedModelNames
	if len(names) == 0 {
		names = []string{s.cfg.Model}
	}
	for _, n := range names {
		list.Data = append(list.Data, openai.Model{ID: n, Object: openai.ObjectModel, Created: created, OwnedBy: "vllm",
			Root: s.cfg.Model, MaxModelLen: s.cfg.MaxModelLen})
	}
	for _, l := range s.loras.list() {
		parent := s.display
		list.Data = append(list.Data, openai.Model{ID: l.Name, Object: openai.ObjectModel, Created: created, OwnedBy: "vllm",
			Root: l.Path, Parent: &parent, MaxModelLen: s.cfg.MaxModelLen})
	}
	body, _ := json.Marshal(list)
	writeJSON(w, http.StatusOK, body)
}

// tokenizeRequest is vLLM's /tokenize body: a prompt or chat messages, not both.
type tokenizeRequest struct {
	Model    string               `json:"model"`
	Prompt   *string              `json:"prompt"`
	Messages []openai.ChatMessage `json:"messages"`
}

type tokenizeResponse struct {
	MaxModelLen int      `json:"max_model_len"`
	Count       int      `json:"count"`
	Tokens      []uint32 `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	buf := getBuf()
	defer putBuf(buf)
	if e := s.readBody(r, buf); e != nil {
		s.writeError(w, e)
		return
	}
	var req tokenizeRequest
	if e := decodeBody(*buf, &req); e != nil {
		s.writeError(w, e)
		return
	}
	if req.Model != "" {
		if _, e := s.resolveModel(req.Model); e != nil {
			s.writeError(w, e)
			return
		}
	}
	var text string
	switch {
	case req.Prompt != nil && req.Messages != nil:
		s.writeError(w, badRequest("", "only one of prompt or messages may be given"))
		return
	case req.Prompt != nil:
		text = *req.Prompt
	case req.Messages != nil:
		var b bytes.Buffer
		for _, m := range req.Messages {
			fmt.Fprintf(&b, "### %s: %s\n", m.Role, m.Content.PlainText())
		}
		text = b.String()
	default:
		s.writeError(w, badRequest("", "either prompt or messages must be given"))
		return
	}
	ids := tokenIDs([]uint32{}, text)
	body, _ := json.Marshal(tokenizeResponse{MaxModelLen: s.cfg.MaxModelLen, Count: len(ids), Tokens: ids})
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = []string{"application/json"}
	if time.Since(s.started) < s.cfg.StartupDuration.D() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleSleep toggles sleep mode, which upstream only honours with --enable-sleep-mode and
// VLLM_SERVER_DEV_MODE=1; otherwise the call succeeds and changes nothing.
func (s *Server) handleSleep(sleep bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.EnableSleepMode && s.devMode {
			s.sleeping.Store(sleep)
		}
		w.WriteHeader(http.StatusOK)
	}
}

func (s *Server) handleIsSleeping(w http.ResponseWriter, _ *http.Request) {
	body, _ := json.Marshal(map[string]bool{"is_sleeping": s.sleeping.Load()})
	writeJSON(w, http.StatusOK, body)
}
