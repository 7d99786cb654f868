package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// replyError is an error the gateway answers itself. The catalogue below reproduces the
// local_reply mappers of upstream's modelharness chart (status, code, message, error source and
// retry-after; ../shared/facts/upstream-production-stack.md §1.8), so that clients and the e2e
// suite see the same outage replies from either profile.
type replyError struct {
	status     int
	code       string
	message    string
	source     string
	retryAfter string
	typ        string
	// cause is the internal reason, for logs only; clients never see it.
	cause error
}

func (e *replyError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.code, e.cause)
	}
	return fmt.Sprintf("%d %s", e.status, e.code)
}

func (e *replyError) Unwrap() error { return e.cause }

// because returns a copy of e that records why it happened.
func (e replyError) because(cause error) *replyError {
	e.cause = cause
	return &e
}

// Upstream's outage bodies all use type service_unavailable.
const outageType = "service_unavailable"

var (
	// ext_authz unreachable, timed out or answering 5xx (mapper 1).
	errAuthzUnavailable = replyError{status: http.StatusBadGateway, code: "ext_authz_unavailable",
		message: "The authentication service is temporarily unavailable. Please retry.", source: "authz", typ: outageType}
	// A model was named but nothing can serve it: no ready endpoint, connect failure, timeout
	// (mapper 2). The only reply upstream marks retryable.
	errModelUnavailable = replyError{status: http.StatusServiceUnavailable, code: "model_unavailable",
		message: "The requested model is temporarily unavailable. Back off and retry; see Events in kube-system for the root cause.",
		source:  "inferenceset", retryAfter: "10", typ: outageType}
	// The same without a model header (mapper 3).
	errGatewayUnavailable = replyError{status: http.StatusBadGateway, code: "gateway_unavailable",
		message: "The namespace gateway has no ready upstream; retry shortly.", source: "gateway", typ: outageType}
	// The endpoint picker failed and its pool fails closed (mapper 4).
	errEPPUnavailable = replyError{status: http.StatusBadGateway, code: "epp_unavailable",
		message: "The endpoint picker is temporarily unavailable. Please retry.", source: "epp", typ: outageType}
	// The body-based router failed; the gateway fails closed on it (mapper 5).
	errBBRUnavailable = replyError{status: http.StatusBadGateway, code: "bbr_unavailable",
		message: "The request router is temporarily unavailable. Please retry.", source: "bbr", typ: outageType}
	// Anything else the gateway cannot do (mapper 6 keeps the original 5xx).
	errInternal = replyError{status: http.StatusInternalServerError, code: "gateway_internal_error",
		message: "The namespace gateway encountered an unexpected error. Please retry.", source: "gateway", typ: outageType}
)

// tooLarge is the gateway's own answer to a body over its limit; code as BBR's.
func tooLarge(limit int64) *replyError {
	return &replyError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
		message: fmt.Sprintf("The request body is larger than %d bytes.", limit), source: "gateway", typ: "invalid_request_error"}
}

// unavailable picks the outage reply for a request that could not reach a backend: the model's
// when a model was routed on, the gateway's otherwise (upstream mappers 2 and 3).
func unavailable(r *http.Request, cause error) *replyError {
	if _, ok := r.Header[modelHeader]; ok {
		return errModelUnavailable.because(cause)
	}
	return errGatewayUnavailable.because(cause)
}

func (e *replyError) write(w http.ResponseWriter) {
	env := openai.NewError(e.message, e.typ, e.code)
	h := w.Header()
	if e.retryAfter != "" {
		h.Set("Retry-After", e.retryAfter)
	}
	body := env.JSON()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Type", "application/json")
	h.Set(openai.ErrorSourceHeader, e.source)
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// writeLocalReply sends a reply produced by a filter (an ext_authz denial, an ext_proc
// ImmediateResponse) to the client. Filters may answer in plain text, as upstream's EPP does
// ("inference error: …"), but the gateway's contract is OpenAI-shaped JSON, so a body that is
// not a JSON object is wrapped into an error envelope carrying its text.
func writeLocalReply(w http.ResponseWriter, status int, headers http.Header, body []byte, source string) {
	h := w.Header()
	for k, vs := range headers {
		h[k] = vs
	}
	if !isJSONObject(body) {
		body = wrapText(status, body)
		h.Set("Content-Type", "application/json")
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	if h.Get(openai.ErrorSourceHeader) == "" {
		h.Set(openai.ErrorSourceHeader, source)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if status < 100 || status > 599 {
		// ext_authz and ext_proc carry the status as a free enum; Envoy treats a
		// nonsensical one as an internal error.
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func isJSONObject(b []byte) bool {
	t := bytes.TrimSpace(b)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

func wrapText(status int, body []byte) []byte {
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = http.StatusText(status)
	}
	typ := "invalid_request_error"
	if status >= 500 {
		typ = outageType
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	if code == "" {
		code = "error"
	}
	return openai.NewError(msg, typ, code).JSON()
}
