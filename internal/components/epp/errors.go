package epp

import (
	"errors"
	"net/http"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// errorSource names the picker in x-kaito-error-source.
const errorSource = "epp"

// Upstream's internal error codes (GAIE pkg/common/error, llm-d-facts §2.3); they appear in the
// error_code label of inference_objective_request_error_total and in error messages.
const (
	codeBadRequest         = "BadRequest"
	codeResourceExhausted  = "ResourceExhausted"
	codeServiceUnavailable = "ServiceUnavailable"
	codeInternal           = "Internal"
)

// reqError is a request failure answered with an ImmediateResponse.
type reqError struct {
	status int
	code   string
	msg    string
}

func (e *reqError) Error() string { return "inference error: " + e.code + " - " + e.msg }

func badRequest(msg string) *reqError {
	return &reqError{status: http.StatusBadRequest, code: codeBadRequest, msg: msg}
}

// schedulingError maps scheduler failures to upstream statuses: nothing to schedule on is 503,
// everything filtered away is 429.
func schedulingError(err error) *reqError {
	switch {
	case errors.Is(err, scheduling.ErrNoEndpoints):
		return &reqError{status: http.StatusServiceUnavailable, code: codeServiceUnavailable, msg: err.Error()}
	case errors.Is(err, scheduling.ErrNoCapacity):
		return &reqError{status: http.StatusTooManyRequests, code: codeResourceExhausted, msg: err.Error()}
	}
	return &reqError{status: http.StatusInternalServerError, code: codeInternal, msg: err.Error()}
}

// OpenAI error type and code for each upstream code. The message keeps upstream's
// "inference error: <Code> - <msg>" text so logs and clients see the same words either way.
var openAIShape = map[string][2]string{
	codeBadRequest:         {"invalid_request_error", "bad_request"},
	codeResourceExhausted:  {"rate_limit_error", "resource_exhausted"},
	codeServiceUnavailable: {"service_unavailable", "no_ready_endpoints"},
	codeInternal:           {"internal_error", "internal_error"},
}

func (e *reqError) response() *extprocv3.ProcessingResponse {
	shape := openAIShape[e.code]
	return extproc.ImmediateError(e.status, errorSource, openai.NewError(e.Error(), shape[0], shape[1]))
}
