package load

import (
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// reservedHeaders are set by load and chat themselves, or by the HTTP client: a --header may
// not replace them (the API key has its own flag).
var reservedHeaders = map[string]string{
	"Authorization":     "use --api-key",
	"Content-Type":      "requests are always JSON",
	"Content-Length":    "the client sets it",
	"Host":              "it follows --url",
	"Transfer-Encoding": "the client sets it",
	"Connection":        "the client manages connections",
}

// ParseHeaders reads curl-style "Name: value" flags into extra request headers, e.g.
// "x-gateway-inference-objective: batch" to send requests under an InferenceObjective.
func ParseHeaders(flags []string) (http.Header, error) {
	h := http.Header{}
	for _, f := range flags {
		name, value, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("header %q: want \"Name: value\"", f)
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if err := checkHeaders(h); err != nil {
		return nil, err
	}
	return h, nil
}

// checkHeaders refuses header names or values HTTP does not allow, and the reserved ones.
func checkHeaders(h http.Header) error {
	for name, values := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("header %q: not a valid header name", name)
		}
		if why, ok := reservedHeaders[http.CanonicalHeaderKey(name)]; ok {
			return fmt.Errorf("header %q cannot be set here: %s", name, why)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("header %q: value %q has characters HTTP does not allow", name, v)
			}
		}
	}
	return nil
}

// addHeaders copies extra headers onto a request.
func addHeaders(req *http.Request, h http.Header) {
	for name, values := range h {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
}
