// Package openai holds the OpenAI wire types shared by the simulator, the gateway data path
// and the load generator, so that every component speaks byte-identical JSON.
package openai

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// ErrorSourceHeader names the component that produced an error response
// (gateway | bbr | epp | ext_authz | model), see shared/DESIGN.md "Names and contracts".
const ErrorSourceHeader = "x-kaito-error-source"

// Error is the body of an OpenAI error: {"error":{"message","type","param","code"}}.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    any     `json:"code"`
}

// ErrorEnvelope is the top-level OpenAI error document.
type ErrorEnvelope struct {
	Error Error `json:"error"`
}

// NewError builds an envelope; code may be a string (gateway codes such as "model_not_found")
// or an int (the simulator mirrors vLLM, which puts the HTTP status there).
func NewError(message, typ string, code any) ErrorEnvelope {
	return ErrorEnvelope{Error: Error{Message: message, Type: typ, Code: code}}
}

// JSON renders the envelope; it cannot fail for these field types.
func (e ErrorEnvelope) JSON() []byte {
	// Not json.Marshal: its HTML escaping would turn a message's "<key>" into "\u003ckey\u003e",
	// which clients print verbatim.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(e)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// WriteError writes an OpenAI error response with the error-source header set.
func WriteError(w http.ResponseWriter, status int, source string, env ErrorEnvelope) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if source != "" {
		h.Set(ErrorSourceHeader, source)
	}
	w.WriteHeader(status)
	_, _ = w.Write(env.JSON())
}

// Error types used by vLLM (and so by llm-d-inference-sim), keyed by HTTP status.
const (
	TypeBadRequest          = "BadRequestError"
	TypeAuthentication      = "AuthenticationError"
	TypePermissionDenied    = "PermissionDeniedError"
	TypeNotFound            = "NotFoundError"
	TypeUnprocessableEntity = "UnprocessableEntityError"
	TypeRateLimit           = "RateLimitError"
	TypeInternalServer      = "InternalServerError"
	TypeAPIConnection       = "APIConnectionError"
)

// TypeForStatus maps an HTTP status to vLLM's error type name; statuses vLLM has no name
// for fall back to APIConnectionError, as the upstream simulator does.
func TypeForStatus(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return TypeBadRequest
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermissionDenied
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusUnprocessableEntity:
		return TypeUnprocessableEntity
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status >= http.StatusInternalServerError:
		return TypeInternalServer
	default:
		return TypeAPIConnection
	}
}

// NewStatusError builds the vLLM flavour of the envelope: the type follows the status and
// code is the integer status itself. param may be empty for a JSON null.
func NewStatusError(status int, message, param string) ErrorEnvelope {
	env := NewError(message, TypeForStatus(status), status)
	if param != "" {
		env.Error.Param = &param
	}
	return env
}
