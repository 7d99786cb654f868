// Package authz is the offline stand-in for llm-gateway-auth: an Envoy ext_authz gRPC server
// that admits a request only with its namespace's API key, and the operator that turns an
// APIKey object into that key (Secret llm-api-key). See
// ../shared/facts/kaito-keda-auth-facts.md §4 and upstream-production-stack.md §1.6, §6.
package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

const (
	// NamespaceExtension is the ext_authz context extension a gateway sets per route to name the
	// namespace whose key applies; it beats the Host header, which a client controls.
	NamespaceExtension = "gateway-namespace"
	// errorSource names this component in x-kaito-error-source: upstream uses "authz" for both
	// its 401s and its outage replies (shared/facts/upstream-production-stack.md).
	errorSource = "authz"
)

// KeyStore answers which API key a namespace has.
type KeyStore interface {
	// APIKey returns the namespace's key; ok is false when the namespace has none. An error means
	// the store cannot tell (e.g. not synced yet), which must not be mistaken for "no key".
	APIKey(namespace string) (key []byte, ok bool, err error)
}

// StaticKeys is an in-memory KeyStore: namespace → key.
type StaticKeys map[string]string

// APIKey implements KeyStore.
func (s StaticKeys) APIKey(namespace string) ([]byte, bool, error) {
	k, ok := s[namespace]
	return []byte(k), ok && k != "", nil
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	keys KeyStore
}

// NewServer returns an ext_authz server checking bearer tokens against keys.
func NewServer(keys KeyStore) *Server { return &Server{keys: keys} }

// Check admits the request when its bearer token equals the key of the namespace the request is
// for, and denies it with 401 and an OpenAI-shaped body otherwise (upstream answers 401 for
// every deny; the body follows upstream's error-handling proposal, kaito-keda-auth-facts §4.4).
func (s *Server) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	ns, err := namespaceOf(attrs)
	if err != nil {
		return deny(err.Error()), nil
	}
	token, problem := bearerToken(attrs.GetRequest().GetHttp())
	if problem != "" {
		return deny(problem), nil
	}
	want, ok, err := s.keys.APIKey(ns)
	if err != nil {
		// A gRPC error makes the data plane apply its failure mode (fail closed, 503 upstream):
		// an outage of the key store must look like one, not like a wrong key.
		return nil, status.Errorf(codes.Unavailable, "reading the API key of namespace %q: %v", ns, err)
	}
	if !ok || !equal(token, want) {
		return deny(fmt.Sprintf("Incorrect API key provided for namespace %q.", ns)), nil
	}
	return extproc.Allowed(), nil
}

func deny(message string) *authv3.CheckResponse {
	// OpenAI's own 401 uses type invalid_request_error with code invalid_api_key.
	env := openai.NewError(message, "invalid_request_error", "invalid_api_key")
	return extproc.Denied(codes.Unauthenticated, http.StatusUnauthorized, errorSource, env)
}

// equal compares in constant time. Hashing first makes the time independent of the key's
// length too, which a plain ConstantTimeCompare would leak.
func equal(token string, key []byte) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256(key)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// namespaceError explains how to make the namespace known; its text is the client's message.
type namespaceError struct{ detail string }

func (e *namespaceError) Error() string {
	return "Cannot determine the gateway namespace (" + e.detail + "): configure the ext_authz context extension \"" +
		NamespaceExtension + "\" on the route, or send a Host of the form <namespace>.<domain>."
}

// namespaceOf picks the namespace whose key applies: the gateway-namespace context extension,
// else the first DNS label of the Host (kaito-keda-auth-facts §4.4). A single-label host such as
// localhost, or an IP address, names no namespace.
func namespaceOf(attrs *authv3.AttributeContext) (string, error) {
	if ns, ok := attrs.GetContextExtensions()[NamespaceExtension]; ok && ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return "", &namespaceError{detail: fmt.Sprintf("context extension %q is not a namespace name", ns)}
		}
		return ns, nil
	}
	h := attrs.GetRequest().GetHttp()
	host := h.GetHost()
	if host == "" {
		host = header(h, ":authority")
	}
	if host == "" {
		host = header(h, "host")
	}
	if host == "" {
		return "", &namespaceError{detail: "the request has no Host"}
	}
	if hostOnly, _, err := net.SplitHostPort(host); err == nil {
		host = hostOnly
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return "", &namespaceError{detail: fmt.Sprintf("Host %q is an IP address", host)}
	}
	first, rest, found := strings.Cut(host, ".")
	if !found || rest == "" {
		return "", &namespaceError{detail: fmt.Sprintf("Host %q has a single label", host)}
	}
	if errs := validation.IsDNS1123Label(first); len(errs) > 0 {
		return "", &namespaceError{detail: fmt.Sprintf("%q is not a namespace name", first)}
	}
	return first, nil
}

// bearerToken returns the token of "Authorization: Bearer <token>", or a message for the client.
func bearerToken(h *authv3.AttributeContext_HttpRequest) (token, problem string) {
	v := header(h, "authorization")
	if v == "" {
		return "", `Missing API key: send it as "Authorization: Bearer <key>".`
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(v), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", `Malformed Authorization header: expected "Authorization: Bearer <key>".`
	}
	return tok, ""
}

// header reads a request header from the headers map (lower-case keys) or, when the data plane
// sends raw headers (encode_raw_headers), from header_map.
func header(h *authv3.AttributeContext_HttpRequest, name string) string {
	if v, ok := h.GetHeaders()[name]; ok {
		return v
	}
	v, _ := extproc.HeaderValue(h.GetHeaderMap(), name)
	return v
}
