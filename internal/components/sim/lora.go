package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// LoRA adapters: loading and unloading at runtime, and the state behind
// vllm:lora_requests_info.

type loraRequest struct {
	LoraName string `json:"lora_name"`
	LoraPath string `json:"lora_path"`
}

// readLoraRequest reads a load/unload body, answering 400 itself when it is unusable.
func (s *Server) readLoraRequest(w http.ResponseWriter, r *http.Request, endpoint string) (loraRequest, bool) {
	var req loraRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(body, &req) != nil || req.LoraName == "" {
		s.writeError(w, badRequest("", "invalid %s request: lora_name is required", endpoint))
		return req, false
	}
	return req, true
}

func (s *Server) handleLoadLora(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readLoraRequest(w, r, "load_lora_adapter")
	if !ok {
		return
	}
	if s.served[req.LoraName] || !s.loras.load(LoraModule{Name: req.LoraName, Path: req.LoraPath}) {
		s.writeError(w, badRequest("", "The lora adapter '%s' has already been loaded.", req.LoraName))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleUnloadLora(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readLoraRequest(w, r, "unload_lora_adapter")
	if !ok {
		return
	}
	if !s.loras.unload(req.LoraName) {
		s.writeError(w, badRequest("", "The lora adapter '%s' cannot be found.", req.LoraName))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// loraState tracks loaded adapters and which of them have running or waiting requests, for
// vllm:lora_requests_info.
type loraState struct {
	mu      sync.Mutex
	m       *metrics
	loaded  map[string]LoraModule
	running map[string]int
}

func (l *loraState) init(m *metrics) {
	l.m, l.loaded, l.running = m, map[string]LoraModule{}, map[string]int{}
}

func (l *loraState) load(mod LoraModule) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.loaded[mod.Name]; ok {
		return false
	}
	l.loaded[mod.Name] = mod
	return true
}

func (l *loraState) unload(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.loaded[name]; !ok {
		return false
	}
	delete(l.loaded, name)
	return true
}

func (l *loraState) isLoaded(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.loaded[name]
	return ok
}

func (l *loraState) list() []LoraModule {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LoraModule, 0, len(l.loaded))
	for _, m := range l.loaded {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b LoraModule) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// track counts a request against its adapter while it is in flight. Base-model requests
// cost nothing here (the common case).
func (l *loraState) track(model string) func() {
	if !l.isLoaded(model) {
		return func() {}
	}
	l.mu.Lock()
	l.running[model]++
	l.publishLocked()
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.running[model]--; l.running[model] <= 0 {
			delete(l.running, model)
		}
		l.publishLocked()
		l.mu.Unlock()
	}
}

func (l *loraState) publishLocked() {
	names := make([]string, 0, len(l.running))
	for n := range l.running {
		names = append(names, n)
	}
	slices.Sort(names)
	l.m.setLoras(names, nil)
}
