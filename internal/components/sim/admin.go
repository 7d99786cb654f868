package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// runtimeKeys are the settings POST /admin/config may change while serving: failure
// injection and the latency model (facts §1.2, §1.6). Everything else needs a restart.
var runtimeKeys = []string{
	"failure-injection-rate", "failure-types", "latency-calculator", "time-factor-under-load",
	"time-to-first-token", "time-to-first-token-std-dev", "inter-token-latency", "inter-token-latency-std-dev",
	"prefill-overhead", "prefill-time-per-token", "prefill-time-std-dev",
	"kv-cache-transfer-latency", "kv-cache-transfer-latency-std-dev",
	"kv-cache-transfer-time-per-token", "kv-cache-transfer-time-std-dev",
}

// handleGetConfig returns the effective configuration with upstream key names.
func (s *Server) handleGetConfig(w http.ResponseWriter, _ *http.Request) {
	s.adminMu.Lock()
	cfg := s.lat.Load().cfg
	cfg.FailureInjectionRate, cfg.FailureTypes = s.failures.get()
	s.adminMu.Unlock()
	body, err := json.Marshal(cfg)
	if err != nil {
		s.writeError(w, &apiError{status: http.StatusInternalServerError, message: "encode config: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// handleSetConfig applies a partial update. The result is validated as a whole before it
// takes effect, so a bad update changes nothing.
func (s *Server) handleSetConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.writeError(w, badRequest("", "read admin config: %v", err))
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		s.writeError(w, badRequest("", "admin config must be a JSON object: %v", err))
		return
	}
	for k := range keys {
		if !slices.Contains(runtimeKeys, k) {
			s.writeError(w, badRequest(k, "%q cannot be changed at runtime; changeable keys: %s", k, strings.Join(runtimeKeys, ", ")))
			return
		}
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	cfg := s.lat.Load().cfg
	cfg.FailureInjectionRate, cfg.FailureTypes = s.failures.get()
	if err := json.Unmarshal(body, &cfg); err != nil {
		s.writeError(w, badRequest("", "invalid admin config: %v", err))
		return
	}
	if err := cfg.Validate(); err != nil {
		s.writeError(w, badRequest("", "invalid admin config: %v", err))
		return
	}
	s.failures.set(cfg.FailureInjectionRate, cfg.FailureTypes)
	s.lat.Store(newLatencyModel(cfg, s.rand))
	w.WriteHeader(http.StatusOK)
}
