package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// forwardRequest is what goes to the backend: the body (streamed from the client, or the
// buffered body a processor returned), where to send it, and the picker exchange that sees the
// response, if any.
type forwardRequest struct {
	noBody bool
	// stream sends the client's body as it arrives; no processor has read it.
	stream bool
	// payload is the buffered body; replayable says a retry can send it again.
	payload    []byte
	replayable bool
	dests      []string
	picker     *exchange
	failOpen   bool
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward proxies the request to the first destination that accepts a connection and streams
// the response back, through the picker when it asked to see responses. Only connection
// failures move on to the next destination, and only with a body that can be sent again.
func (s *Server) forward(w *responseWriter, r *http.Request, fr forwardRequest) error {
	ctx := r.Context()
	prepareOutbound(r)
	var resp *http.Response
	var dest string
	var err error
	for i, d := range fr.dests {
		dest = d
		var out *http.Request
		out, err = http.NewRequestWithContext(ctx, r.Method, "http://"+d+r.URL.RequestURI(), nil)
		if err != nil {
			return errInternal.because(fmt.Errorf("building the request to %s: %w", d, err))
		}
		out.Header, out.Host = r.Header, r.Host
		switch {
		case fr.noBody:
		case fr.stream:
			out.Body, out.ContentLength = r.Body, r.ContentLength
		default:
			out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(fr.payload)), int64(len(fr.payload))
		}
		resp, err = s.transport.RoundTrip(out)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return &clientGone{err: ctx.Err()}
		}
		if mb, ok := errorsAs[*http.MaxBytesError](err); ok {
			return &sourceError{err: mb}
		}
		if !(fr.replayable || fr.noBody) || !isDialError(err) || i == len(fr.dests)-1 {
			break
		}
		s.cfg.Logger.Info("endpoint refused the connection; trying the next one", "endpoint", d, "error", err)
	}
	if err != nil {
		return unavailable(r, fmt.Errorf("forwarding to %s: %w", dest, err))
	}
	defer resp.Body.Close()
	removeHopByHop(resp.Header)
	if resp.StatusCode >= 400 {
		markModelError(resp)
	}

	if fr.picker != nil {
		return fr.picker.respond(w, resp, dest, fr.failOpen)
	}
	writeHeader(w, resp)
	return copyFlushing(w, resp.Body, resp.ContentLength)
}

// writeHeader starts the client's response with the backend's status and headers.
func writeHeader(w *responseWriter, resp *http.Response) {
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
}

// maxWrappedError bounds the non-JSON error bodies the gateway rewrites.
const maxWrappedError = 64 << 10

// markModelError labels an error answered by the backend with x-kaito-error-source: model and,
// when the body is not JSON (a model server's plain-text 404 or 405 for an unknown path or
// method), wraps its text in the OpenAI envelope, so that every error reaching a client through
// the gateway is machine-readable. JSON and event-stream bodies pass untouched.
func markModelError(resp *http.Response) {
	if resp.Header.Get(openai.ErrorSourceHeader) == "" {
		resp.Header.Set(openai.ErrorSourceHeader, "model")
	}
	ct := resp.Header.Get("Content-Type")
	if strings.Contains(ct, "json") || strings.Contains(ct, "event-stream") {
		return
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWrappedError+1))
	if err != nil || len(data) > maxWrappedError {
		resp.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(data), resp.Body), Closer: resp.Body}
		return
	}
	wrapped := wrapText(resp.StatusCode, data)
	resp.Body = readCloser{Reader: bytes.NewReader(wrapped), Closer: resp.Body}
	resp.ContentLength = int64(len(wrapped))
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", strconv.Itoa(len(wrapped)))
}

type readCloser struct {
	io.Reader
	io.Closer
}

// copyFlushing copies the backend's body to the client, flushing after every read so that
// server-sent events leave as soon as the backend produced them. size is the body's length, -1
// when unknown: the read that completes a known length is not flushed, since the end of the
// response writes it anyway, which saves a syscall per response.
func copyFlushing(w *responseWriter, body io.Reader, size int64) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return &clientGone{err: werr}
			}
			if size >= 0 {
				size -= int64(n)
			}
			if size != 0 {
				w.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &backendError{err: err}
		}
	}
}

// prepareOutbound turns the client's request headers into the upstream request's: hop-by-hop
// headers go, X-Forwarded-For and -Proto come, as a proxy must.
func prepareOutbound(r *http.Request) {
	removeHopByHop(r.Header)
	// The body's length is decided per attempt; a processor's Content-Length may be stale.
	r.Header.Del("Content-Length")
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		r.Header.Set("X-Forwarded-For", ip)
	}
	r.Header.Set("X-Forwarded-Proto", "http")
}

// hopHeaders apply to one connection only (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// isDialError reports a failure to connect, after which nothing was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
