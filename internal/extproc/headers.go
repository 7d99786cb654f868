// Package extproc holds the small pieces of Envoy's ext_proc and ext_authz wire protocols that
// every offline component speaks the same way: reading headers out of a HeaderMap, building
// header mutations, answering with an OpenAI-shaped error, and splitting a body into streamed
// chunks. The gateway (client side), BBR, the endpoint picker and authz (server side) share it
// so that each side agrees with Envoy's semantics in one place
// (../shared/facts/llm-d-facts.md §5.2, §5.3).
package extproc

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
)

// HeaderValue returns the first value of header name in hm and whether it was present.
// Names compare case-insensitively. Envoy fills raw_value (bytes) when its
// send_header_raw_value runtime feature is on and the string value otherwise, so both are read,
// raw_value first.
func HeaderValue(hm *corev3.HeaderMap, name string) (string, bool) {
	for _, h := range hm.GetHeaders() {
		if strings.EqualFold(h.GetKey(), name) {
			return headerText(h), true
		}
	}
	return "", false
}

func headerText(h *corev3.HeaderValue) string {
	if raw := h.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return h.GetValue()
}

// RequestHeaderMap renders an HTTP request's headers the way Envoy sends them to an ext_proc
// server: lower-case keys, values in raw_value, one entry per value, and the pseudo headers
// :method, :path, :authority and :scheme first. Go moves Host out of the header map, so it comes
// back as :authority.
func RequestHeaderMap(r *http.Request) *corev3.HeaderMap {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	b := newHeaderMapBuilder(4, r.Header)
	b.add(":method", r.Method)
	b.add(":path", r.URL.RequestURI())
	b.add(":authority", r.Host)
	b.add(":scheme", scheme)
	b.addHTTP(r.Header)
	return b.hm
}

// ResponseHeaderMap renders response headers for an ext_proc server, with :status first.
func ResponseHeaderMap(status int, h http.Header) *corev3.HeaderMap {
	b := newHeaderMapBuilder(1, h)
	b.add(":status", strconv.Itoa(status))
	b.addHTTP(h)
	return b.hm
}

// headerMapBuilder builds a HeaderMap with three allocations instead of two per header: the
// entries, the pointers to them and the bytes of every value each come from one slice. A map is
// built for every exchange of every request, so this is a measurable share of the data plane's
// garbage.
type headerMapBuilder struct {
	hm     *corev3.HeaderMap
	values []corev3.HeaderValue
	raw    []byte
}

func newHeaderMapBuilder(extra int, h http.Header) *headerMapBuilder {
	n, size := extra, 64*extra
	for _, vs := range h {
		n += len(vs)
		for _, v := range vs {
			size += len(v)
		}
	}
	return &headerMapBuilder{
		hm:     &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, n)},
		values: make([]corev3.HeaderValue, n),
		raw:    make([]byte, 0, size),
	}
}

func (b *headerMapBuilder) add(key, value string) {
	start := len(b.raw)
	b.raw = append(b.raw, value...)
	var hv *corev3.HeaderValue
	if len(b.hm.Headers) < len(b.values) {
		hv = &b.values[len(b.hm.Headers)]
	} else {
		hv = &corev3.HeaderValue{}
	}
	// The capacity is clipped so that an append by the receiver cannot run into the next value.
	hv.Key, hv.RawValue = key, b.raw[start:len(b.raw):len(b.raw)]
	b.hm.Headers = append(b.hm.Headers, hv)
}

func (b *headerMapBuilder) addHTTP(h http.Header) {
	for k, vs := range h {
		key := lowerKey(k)
		for _, v := range vs {
			b.add(key, v)
		}
	}
}

// lowerKey lower-cases a canonical header name without allocating for the names every request
// carries.
func lowerKey(k string) string {
	switch k {
	case "Content-Type":
		return "content-type"
	case "Content-Length":
		return "content-length"
	case "Authorization":
		return "authorization"
	case "Accept":
		return "accept"
	case "Accept-Encoding":
		return "accept-encoding"
	case "User-Agent":
		return "user-agent"
	case "X-Request-Id":
		return "x-request-id"
	case "X-Gateway-Model-Name":
		return "x-gateway-model-name"
	case "X-Forwarded-For":
		return "x-forwarded-for"
	case "X-Forwarded-Proto":
		return "x-forwarded-proto"
	case "Date":
		return "date"
	}
	return strings.ToLower(k)
}

func rawHeader(key, value string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: key, RawValue: []byte(value)}
}

// SetHeader is one header to set, replacing any value already there. The append action is
// spelled out because Envoy reads an unset action as "use the deprecated append flag", whose
// default differs between ext_proc and route configuration.
func SetHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       rawHeader(key, value),
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// SetHeaders builds a mutation that sets the given key/value pairs (key, value, key, value, ...).
func SetHeaders(kv ...string) *extprocv3.HeaderMutation {
	if len(kv)%2 != 0 {
		panic("extproc.SetHeaders: odd number of arguments")
	}
	m := &extprocv3.HeaderMutation{}
	for i := 0; i < len(kv); i += 2 {
		m.SetHeaders = append(m.SetHeaders, SetHeader(kv[i], kv[i+1]))
	}
	return m
}

// ApplyHeaderMutation applies an ext_proc header mutation to h with Envoy's semantics: removals
// first, then sets in order. Pseudo headers, Host and x-envoy-* headers are skipped, as Envoy's
// default mutation rules ignore them. An invalid name or value fails the whole mutation, as it
// fails the ext_proc filter in Envoy.
func ApplyHeaderMutation(h http.Header, m *extprocv3.HeaderMutation) error {
	for _, name := range m.GetRemoveHeaders() {
		if !validName(name) {
			return fmt.Errorf("remove_headers: invalid header name %q", name)
		}
		if !mutable(name) {
			continue
		}
		h.Del(name)
	}
	return ApplyHeaderOptions(h, m.GetSetHeaders())
}

// ApplyHeaderOptions applies header options (an ext_proc set_headers list, ImmediateResponse
// headers or an ext_authz DeniedHttpResponse/OkHttpResponse header list) to h.
//
// A non-zero append_action decides; append_action 0 is indistinguishable from unset, so the
// deprecated append flag decides then and defaults to overwrite, which is how Envoy's ext_proc
// and ext_authz filters read these lists. An empty value is dropped unless keep_empty_value.
func ApplyHeaderOptions(h http.Header, opts []*corev3.HeaderValueOption) error {
	for _, o := range opts {
		if o.GetHeader() == nil {
			continue
		}
		key, value := o.GetHeader().GetKey(), headerText(o.GetHeader())
		if !validName(key) || !httpguts.ValidHeaderFieldValue(value) {
			return fmt.Errorf("set_headers: invalid header %q", key)
		}
		if !mutable(key) || (value == "" && !o.GetKeepEmptyValue()) {
			continue
		}
		_, exists := h[http.CanonicalHeaderKey(key)]
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h.Add(key, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(key, value)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h.Set(key, value)
			}
		default: // APPEND_IF_EXISTS_OR_ADD, the zero value: fall back to the append flag
			if o.GetAppend().GetValue() {
				h.Add(key, value)
			} else {
				h.Set(key, value)
			}
		}
	}
	return nil
}

// validName accepts HTTP token names and pseudo-header names (":path"), as Envoy does.
func validName(name string) bool {
	return httpguts.ValidHeaderFieldName(strings.TrimPrefix(name, ":"))
}

// mutable reports whether Envoy's default mutation rules let a processor touch this header.
func mutable(name string) bool {
	n := strings.ToLower(name)
	return !strings.HasPrefix(n, ":") && n != "host" && !strings.HasPrefix(n, "x-envoy")
}
