package sim

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// failureInjector implements --failure-injection-rate/--failure-types (facts §1.6): a share
// of requests fails before validation and queueing, with one of the listed error kinds.
type failureInjector struct {
	mu    sync.RWMutex
	rate  int
	types []string
}

func (f *failureInjector) set(rate int, types []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate = rate
	f.types = types
	if len(f.types) == 0 {
		f.types = allFailureTypes
	}
}

// get returns the settings as configured (nil types meaning all).
func (f *failureInjector) get() (int, []string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.types) == len(allFailureTypes) {
		return f.rate, nil
	}
	return f.rate, slices.Clone(f.types)
}

func (f *failureInjector) maybeFail(r *lockedRand, model string, maxModelLen int) *apiError {
	f.mu.RLock()
	rate, types := f.rate, f.types
	f.mu.RUnlock()
	if rate <= 0 || r.IntN(100) >= rate {
		return nil
	}
	return failureError(types[r.IntN(len(types))], model, maxModelLen)
}

func failureError(kind, model string, maxModelLen int) *apiError {
	switch kind {
	case FailureRateLimit:
		return &apiError{status: http.StatusTooManyRequests, message: fmt.Sprintf("Rate limit reached for %s", model)}
	case FailureInvalidAPIKey:
		return &apiError{status: http.StatusUnauthorized, message: "Incorrect API key provided."}
	case FailureContextLength:
		return &apiError{status: http.StatusBadRequest, param: "messages",
			message: fmt.Sprintf("This model's maximum context length is %d tokens. However, your request exceeds it.", maxModelLen)}
	case FailureServerError:
		return &apiError{status: http.StatusServiceUnavailable, message: "server is overloaded or not ready yet"}
	case FailureInvalidRequest:
		return &apiError{status: http.StatusBadRequest, param: "model", message: "Invalid request."}
	default: // FailureModelNotFound
		return &apiError{status: http.StatusNotFound, param: "model", message: fmt.Sprintf("The model `%s` does not exist.", model)}
	}
}
