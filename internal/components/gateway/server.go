// Package gateway is the offline profile's Gateway API implementation for gatewayClassName
// sandbox: the data plane that every Gateway's pods run (this package) and the controller that
// gives each Gateway its pods (package controller).
//
// The data plane is an HTTP reverse proxy with Envoy's filter order as upstream deploys it
// (../shared/facts/llm-d-facts.md §5.4, upstream-production-stack.md §1.5–§1.6):
//
//	ext_authz Check → BBR ext_proc (request side) → HTTPRoute match on the headers BBR set →
//	InferencePool: endpoint picker ext_proc (FULL_DUPLEX_STREAMED) → proxy to the picked endpoint
//	Service: proxy to one of its endpoints
//	no route: the catch-all answers (404 model_not_found / 400 invalid_request_body)
//
// Every reply the gateway makes itself is OpenAI-shaped JSON carrying x-kaito-error-source, with
// upstream's status codes, error codes and retry-after (errors.go).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inference-sandbox/sandbox/internal/components/gateway/routing"
	"github.com/inference-sandbox/sandbox/internal/components/notfound"
	"github.com/inference-sandbox/sandbox/internal/extproc"
)

const (
	// modelHeader is set by BBR from the body's model; model routes match on it.
	modelHeader = "X-Gateway-Model-Name"
	// destinationHeader carries the endpoint picker's choice, "ip:port[,ip:port…]"; the same key
	// names it in the envoy.lb dynamic metadata (llm-d-facts §2.2).
	destinationHeader = "x-gateway-destination-endpoint"
	// servedKey reports back to the picker which endpoint served the request (llm-d-facts §2.4).
	servedKey       = "x-gateway-destination-endpoint-served"
	requestIDHeader = "X-Request-Id"

	// DefaultMaxBodyBytes matches BBR's limit: a bigger body could not be routed anyway.
	DefaultMaxBodyBytes = 16 << 20
	// DefaultReconnectWait covers a picker process restarting in place or a Service moving to
	// a new pod, while a picker that is really gone costs each request at most this before
	// the pool's failure mode applies.
	DefaultReconnectWait = 250 * time.Millisecond
)

// Config configures the data plane of one Gateway.
type Config struct {
	// Gateway is the Gateway this data plane serves; its namespace is the ext_authz
	// gateway-namespace context extension.
	Gateway types.NamespacedName
	// AuthzAddress is the ext_authz gRPC server ("host:port"); empty disables authorization.
	AuthzAddress string
	// AuthzTimeout bounds one Check; upstream configures 5 s (upstream-production-stack §1.6).
	AuthzTimeout time.Duration
	// NoNamespaceExtension leaves the gateway-namespace context extension out, so that the authz
	// server falls back to the Host header as upstream's apikey-only mode does.
	NoNamespaceExtension bool
	// BBRAddress is the body-based router's ext_proc server; empty disables it.
	BBRAddress string
	// BBRTimeout bounds each wait for a BBR answer.
	BBRTimeout time.Duration
	// PickerTimeout bounds each wait for an endpoint picker answer.
	PickerTimeout time.Duration
	// SkipPickerResponse keeps responses away from the endpoint picker. Upstream sends them
	// (FULL_DUPLEX_STREAMED both ways) so the picker can count tokens and finish its
	// bookkeeping; skipping saves a round trip per chunk.
	SkipPickerResponse bool
	// ReconnectWait bounds how long a request waits for a new connection to a pool's endpoint
	// picker when the old one failed before the request reached it (a picker restart), before
	// the pool's failure mode applies. Requests pay it only while the picker is unreachable.
	ReconnectWait time.Duration
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes int64
	// DialTimeout bounds connecting to a backend endpoint.
	DialTimeout time.Duration
	// BackendTimeout bounds the wait for a backend's response headers, so that a model server
	// that accepts a request and never answers cannot hold the client forever. A non-streaming
	// completion sends its headers only when the whole answer is ready, hence the long default.
	BackendTimeout time.Duration
	Logger         *slog.Logger
}

func (c *Config) defaults() {
	if c.AuthzTimeout <= 0 {
		c.AuthzTimeout = 5 * time.Second
	}
	if c.BBRTimeout <= 0 {
		c.BBRTimeout = 5 * time.Second
	}
	if c.PickerTimeout <= 0 {
		c.PickerTimeout = 10 * time.Second // upstream's EPP gRPC timeout (llm-d-facts §2.2)
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.BackendTimeout <= 0 {
		c.BackendTimeout = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is the data plane: an http.Handler.
type Server struct {
	cfg       Config
	routes    routing.Table
	authz     authv3.AuthorizationClient
	bbr       extprocv3.ExternalProcessorClient
	conns     conns
	transport *http.Transport
	notFound  http.Handler
}

// New builds a data plane serving the routes of table. Connections to the filters are made
// lazily, so a filter that is down at start only fails the requests that need it.
func New(cfg Config, table routing.Table) (*Server, error) {
	cfg.defaults()
	s := &Server{cfg: cfg, routes: table, notFound: notfound.Handler()}
	if cfg.AuthzAddress != "" {
		cc, err := s.conns.pin(cfg.AuthzAddress)
		if err != nil {
			return nil, err
		}
		s.authz = authv3.NewAuthorizationClient(cc)
	}
	if cfg.BBRAddress != "" {
		cc, err := s.conns.pin(cfg.BBRAddress)
		if err != nil {
			return nil, err
		}
		s.bbr = extprocv3.NewExternalProcessorClient(cc)
	}
	s.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// A timeout here reaches the client as upstream's retryable model_unavailable.
		ResponseHeaderTimeout: cfg.BackendTimeout,
		// Bodies pass through as the backend sent them; the client negotiates its own encoding.
		DisableCompression: true,
		// HTTP/1.1 only: a vLLM-compatible simulator answers h2c with its gRPC API, not the
		// OpenAI one (llm-d-facts §1.1).
		ForceAttemptHTTP2: false,
	}
	return s, nil
}

// Close releases the filter connections and idle backend connections.
func (s *Server) Close() {
	s.conns.closeAll()
	s.transport.CloseIdleConnections()
}

// ServeHTTP runs one request through the filter chain.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &responseWriter{ResponseWriter: rw}
	err := s.serve(w, r)
	if err == nil {
		return
	}
	s.fail(w, r, err)
}

func (s *Server) serve(w *responseWriter, r *http.Request) error {
	ctx := r.Context()
	if r.Header.Get(requestIDHeader) == "" {
		// Envoy stamps one on every request; the filters and the model log it.
		r.Header.Set(requestIDHeader, uuid.NewString())
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	if s.authz != nil {
		add, err := s.authorize(ctx, r)
		if err != nil {
			return err
		}
		for k, vs := range add {
			w.Header()[k] = vs
		}
	}

	client := newClientBody(r)
	noBody := client.empty()
	var body bodySource = client
	if s.bbr != nil {
		x, err := openExchange(ctx, "bbr", s.bbr, s.cfg.BBRTimeout, processingMode{}, r, bodyOrNil(body, noBody), false)
		if err != nil {
			return err
		}
		defer x.close()
		if _, err := x.requestHeaders(r.Header); err != nil {
			return err
		}
		if !noBody {
			body = requestBody{x: x}
		}
	}

	d, ok := s.routes.Snapshot().Match(r)
	if !ok {
		s.notFound.ServeHTTP(w, r)
		return nil
	}
	b := d.Backend
	switch {
	case b == nil:
		// Gateway API: a rule whose backends all have weight 0 answers 500.
		return errInternal.because(fmt.Errorf("HTTPRoute %s rule %d has no backend with a weight", d.Route, d.Rule))
	case b.Missing:
		return unavailable(r, fmt.Errorf("HTTPRoute %s: %s does not exist", d.Route, b))
	case b.Kind == routing.KindPool:
		return s.servePool(w, r, body, noBody, b.Pool)
	case b.Kind == routing.KindService:
		if len(b.Addresses) == 0 {
			return unavailable(r, fmt.Errorf("%s has no ready endpoint", b))
		}
		fr := forwardRequest{noBody: noBody, dests: []string{pickOne(b.Addresses)}}
		if _, direct := body.(*clientBody); direct {
			fr.stream = true
		} else if !noBody {
			payload, err := readAll(body, s.cfg.MaxBodyBytes)
			if err != nil {
				return err
			}
			fr.payload, fr.replayable = payload, true
		}
		return s.forward(w, r, fr)
	}
	return errInternal.because(fmt.Errorf("HTTPRoute %s: unsupported backend %s", d.Route, b))
}

// servePool asks the pool's endpoint picker where the request goes and forwards it there. The
// picker sees the request headers (with BBR's) and the body, and answers with the destination,
// header changes and the body to send, possibly rewritten.
func (s *Server) servePool(w *responseWriter, r *http.Request, body bodySource, noBody bool, pool *routing.Pool) error {
	failOpen := pool.FailureMode == routing.FailOpen
	fr := forwardRequest{noBody: noBody, failOpen: failOpen}
	x, err := s.pick(r, body, noBody, pool, failOpen, &fr)
	if x != nil {
		defer x.close()
	}
	if err != nil {
		pe, isPicker := errorsAs[*processorError](err)
		if !failOpen || !isPicker {
			return err
		}
		// FailOpen: forward to a ready endpoint of our own choosing with the original body,
		// as the InferencePool API asks (llm-d-facts §2.4).
		s.cfg.Logger.Warn("endpoint picker failed; failing open", "pool", pool.Namespace+"/"+pool.Name, "error", pe)
		fr = forwardRequest{noBody: noBody, failOpen: true}
		switch {
		case noBody:
		case x != nil:
			if err := x.waitPump(); err != nil {
				return err
			}
			fr.payload, fr.replayable = x.sent, true
		default:
			if fr.payload, err = readAll(body, s.cfg.MaxBodyBytes); err != nil {
				return err
			}
			fr.replayable = true
		}
		if x != nil {
			x.close()
		}
		if len(pool.Endpoints) == 0 {
			return unavailable(r, fmt.Errorf("InferencePool %s/%s has no ready endpoint", pool.Namespace, pool.Name))
		}
		fr.dests = []string{pickOne(pool.Endpoints)}
		return s.forward(w, r, fr)
	}
	if !s.cfg.SkipPickerResponse {
		fr.picker = x
	}
	return s.forward(w, r, fr)
}

// pick runs the request half of the picker exchange and fills fr with the destinations and
// the body to send. The exchange is returned even on failure so that a fail-open replay can
// take the body it kept.
func (s *Server) pick(r *http.Request, body bodySource, noBody bool, pool *routing.Pool, keep bool, fr *forwardRequest) (*exchange, error) {
	x, err := s.openPicker(r, body, noBody, pool, keep)
	if err != nil {
		return nil, err
	}
	resp, err := x.requestHeaders(r.Header)
	if err != nil {
		return x, err
	}
	fr.dests = destinations(resp)
	if len(fr.dests) == 0 {
		return x, x.fail(errors.New("the reply names no " + destinationHeader))
	}
	if !noBody {
		if fr.payload, err = readAll(requestBody{x: x}, s.cfg.MaxBodyBytes); err != nil {
			return x, err
		}
		fr.replayable = true
	}
	if err := x.waitPump(); err != nil {
		return x, err
	}
	return x, nil
}

// openPicker opens the exchange with the pool's endpoint picker. When that fails before
// anything reached the picker because there was no connection to it (the picker restarted, or
// its pod was replaced behind the Service), the picker's address is resolved again from the
// routes in force now and, once a connection is ready within ReconnectWait, the exchange is
// opened once more. That is safe: the picker saw nothing of the first attempt and the body has
// not been read yet. Streams that fail later are not retried, since the picker may have acted on
// them and the body is gone; they meet the pool's failure mode.
func (s *Server) openPicker(r *http.Request, body bodySource, noBody bool, pool *routing.Pool, keep bool) (*exchange, error) {
	mode := processingMode{responseHeaders: !s.cfg.SkipPickerResponse}
	addr := pool.Picker
	for attempt := 0; ; attempt++ {
		if addr == "" {
			return nil, &processorError{what: "epp", err: fmt.Errorf("the endpoint picker of InferencePool %s/%s cannot be resolved", pool.Namespace, pool.Name)}
		}
		cc, release, err := s.conns.acquire(addr)
		if err != nil {
			return nil, &processorError{what: "epp", err: err}
		}
		// The request's context ends when its handler returns, after the response went through
		// the picker: the connection is in use until then.
		context.AfterFunc(r.Context(), release)
		x, err := openExchange(r.Context(), "epp", extprocv3.NewExternalProcessorClient(cc), s.cfg.PickerTimeout, mode, r, bodyOrNil(body, noBody), keep)
		if err == nil || attempt > 0 || !reconnectable(err) || r.Context().Err() != nil {
			return x, err
		}
		if cur, ok := s.routes.Snapshot().Pool(pool.Namespace, pool.Name); ok && cur.Picker != "" {
			addr = cur.Picker
		}
		if !s.conns.awaitReconnect(r.Context(), addr, s.cfg.ReconnectWait) {
			return nil, err
		}
		s.cfg.Logger.Debug("endpoint picker reconnected; retrying", "pool", pool.Namespace+"/"+pool.Name, "picker", addr, "error", err)
	}
}

// reconnectable says a processor failure is a missing connection found before anything was
// sent, which a new connection can cure.
func reconnectable(err error) bool {
	pe, ok := err.(*processorError)
	return ok && pe.unsent && status.Code(errors.Unwrap(pe)) == codes.Unavailable
}

// destinations reads the picker's choice from its header mutation, else from the envoy.lb
// dynamic metadata; the first address is primary, the rest are fallbacks (llm-d-facts §7.4).
func destinations(resp *extprocv3.ProcessingResponse) []string {
	var v string
	for _, o := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if strings.EqualFold(o.GetHeader().GetKey(), destinationHeader) {
			v = string(o.GetHeader().GetRawValue())
			if v == "" {
				v = o.GetHeader().GetValue()
			}
			break
		}
	}
	if v == "" {
		if lb := resp.GetDynamicMetadata().GetFields()["envoy.lb"]; lb != nil {
			v = lb.GetStructValue().GetFields()[destinationHeader].GetStringValue()
		}
	}
	var out []string
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

func bodyOrNil(body bodySource, noBody bool) bodySource {
	if noBody {
		return nil
	}
	return body
}

func pickOne(addrs []string) string {
	if len(addrs) == 1 {
		return addrs[0]
	}
	return addrs[rand.IntN(len(addrs))]
}

// fail answers a request that failed before or while it was proxied.
func (s *Server) fail(w *responseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client left; nobody reads an answer. Backend and filter streams were cancelled
		// with the request's context.
		return
	}
	if w.wrote {
		// The response has begun: the only honest signal left is to break the connection, as
		// Envoy resets the stream, so the client does not take a cut body for a whole one.
		s.cfg.Logger.Warn("aborting a response in flight", "path", r.URL.Path, "error", err)
		panic(http.ErrAbortHandler)
	}
	if _, ok := errorsAs[*clientGone](err); ok {
		return
	}
	if d, ok := errorsAs[*denial](err); ok {
		writeLocalReply(w, d.status, d.headers, d.body, "authz")
		return
	}
	if im, ok := errorsAs[*immediate](err); ok {
		s.immediateReply(w, r, im)
		return
	}
	if se, ok := errorsAs[*sourceError](err); ok {
		if mb, ok := errorsAs[*http.MaxBytesError](se); ok {
			tooLarge(mb.Limit).write(w)
			return
		}
		if pe, ok := errorsAs[*processorError](se); ok {
			err = pe
		} else {
			// The client's body broke off; the connection is unusable for an answer.
			s.cfg.Logger.Debug("request body failed", "error", se)
			return
		}
	}
	re, ok := errorsAs[*replyError](err)
	if !ok {
		re = errInternal.because(err)
		if pe, isProc := errorsAs[*processorError](err); isProc {
			switch pe.what {
			case "bbr":
				re = errBBRUnavailable.because(err)
			case "epp":
				re = errEPPUnavailable.because(err)
			}
		} else if _, isBackend := errorsAs[*backendError](err); isBackend {
			re = unavailable(r, err)
		}
	}
	s.cfg.Logger.Warn("request failed", "path", r.URL.Path, "status", re.status, "code", re.code, "error", re.cause)
	re.write(w)
}

// immediateReply relays a filter's ImmediateResponse. BBR's and the picker's 4xx answers
// (bad body, 429 shedding) reach the client as they are. A picker answering 503 has no endpoint
// for the model, which the client is told as upstream's retryable model_unavailable; any other
// 5xx from a filter is its outage (upstream-production-stack §1.8 mappers 2, 4, 5).
func (s *Server) immediateReply(w *responseWriter, r *http.Request, im *immediate) {
	status := int(im.resp.GetStatus().GetCode())
	source := im.what
	if status >= 500 {
		switch {
		case source == "epp" && status == http.StatusServiceUnavailable:
			errModelUnavailable.because(im).write(w)
		case source == "epp":
			errEPPUnavailable.because(im).write(w)
		default:
			errBBRUnavailable.because(im).write(w)
		}
		return
	}
	h := http.Header{}
	if err := extproc.ApplyHeaderMutation(h, im.resp.GetHeaders()); err != nil {
		s.cfg.Logger.Warn("dropping invalid headers of an immediate response", "source", source, "error", err)
		h = http.Header{}
	}
	writeLocalReply(w, status, h, im.resp.GetBody(), source)
}

// responseWriter remembers whether the response has begun, and keeps Flush reachable.
type responseWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *responseWriter) WriteHeader(status int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ io.Writer = (*responseWriter)(nil)
