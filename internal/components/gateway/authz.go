package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// namespaceExtension is the ext_authz context extension naming the namespace whose API key
// applies. The gateway sets it to its own namespace because a client reaching the sandbox on
// 127.0.0.1 sends no Host with a namespace in it, and a Host is forgeable anyway
// (upstream-production-stack §1.6, kaito-keda-auth-facts §4.4).
const namespaceExtension = "gateway-namespace"

// denial is an ext_authz answer that ends the request.
type denial struct {
	status  int
	headers http.Header
	body    []byte
}

func (d *denial) Error() string { return fmt.Sprintf("denied with %d", d.status) }

// authorize asks the ext_authz server about r, fail-closed: a transport error, a timeout or a 5xx
// answer rejects the request with upstream's 502 ext_authz_unavailable. On success the allowed
// header changes are applied to r, and headers to add to the client's response are returned.
func (s *Server) authorize(ctx context.Context, r *http.Request) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AuthzTimeout)
	defer cancel()
	resp, err := s.authz.Check(ctx, s.checkRequest(r))
	if err != nil {
		if r.Context().Err() != nil {
			return nil, &clientGone{err: r.Context().Err()}
		}
		return nil, errAuthzUnavailable.because(fmt.Errorf("ext_authz Check: %w", err))
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		ok := resp.GetOkResponse()
		if err := extproc.ApplyHeaderOptions(r.Header, ok.GetHeaders()); err != nil {
			return nil, errAuthzUnavailable.because(err)
		}
		for _, name := range ok.GetHeadersToRemove() {
			if !strings.HasPrefix(name, ":") && !strings.EqualFold(name, "host") {
				r.Header.Del(name)
			}
		}
		var add http.Header
		if extra := ok.GetResponseHeadersToAdd(); len(extra) > 0 {
			add = http.Header{}
			if err := extproc.ApplyHeaderOptions(add, extra); err != nil {
				return nil, errAuthzUnavailable.because(err)
			}
		}
		return add, nil
	}
	dr := resp.GetDeniedResponse()
	if dr == nil {
		dr = resp.GetErrorResponse()
	}
	status := int(dr.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusForbidden // Envoy's answer to a denial that names no status
	}
	if status >= 500 {
		return nil, errAuthzUnavailable.because(fmt.Errorf("ext_authz answered %d", status))
	}
	h := http.Header{}
	if err := extproc.ApplyHeaderOptions(h, dr.GetHeaders()); err != nil {
		return nil, errAuthzUnavailable.because(err)
	}
	return nil, &denial{status: status, headers: h, body: []byte(dr.GetBody())}
}

// checkRequest describes r the way Envoy's ext_authz filter does: lower-case header names,
// repeated headers merged with commas, pseudo headers included, body not sent.
func (s *Server) checkRequest(r *http.Request) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+4)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	path := r.URL.RequestURI()
	headers[":method"], headers[":path"], headers[":authority"], headers[":scheme"] = r.Method, path, r.Host, "http"
	attrs := &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       r.Header.Get(requestIDHeader),
			Method:   r.Method,
			Headers:  headers,
			Path:     path,
			Host:     r.Host,
			Scheme:   "http",
			Protocol: r.Proto,
			Size:     r.ContentLength,
		}},
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		p, _ := strconv.Atoi(port)
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}},
		}}}
	}
	if s.cfg.Gateway.Namespace != "" && !s.cfg.NoNamespaceExtension {
		attrs.ContextExtensions = map[string]string{namespaceExtension: s.cfg.Gateway.Namespace}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// errorsAs is errors.As with the target allocated for the caller.
func errorsAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}
