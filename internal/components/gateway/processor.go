package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inference-sandbox/sandbox/internal/extproc"
)

// bodySource yields a request body chunk by chunk; last marks the final chunk (which may be
// empty). It is how a body travels from the client through each ext_proc server in turn.
type bodySource interface {
	next() (chunk []byte, last bool, err error)
}

// clientBody reads the client's request body in chunks no larger than an ext_proc message
// should carry.
type clientBody struct {
	r         io.Reader
	remaining int64 // bytes still expected from Content-Length; -1 when chunked
	done      bool
}

func newClientBody(r *http.Request) *clientBody {
	c := &clientBody{r: r.Body, remaining: r.ContentLength}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		c.done = true
	}
	return c
}

func (c *clientBody) empty() bool { return c.done && c.remaining <= 0 }

func (c *clientBody) next() ([]byte, bool, error) {
	if c.done {
		return nil, true, nil
	}
	size := int64(extproc.MaxChunk)
	if c.remaining >= 0 {
		size = min(size, c.remaining)
	}
	buf := make([]byte, size)
	var n int
	var err error
	if c.remaining >= 0 {
		// With a known length the last chunk can carry end_of_stream itself, as Envoy sends it.
		n, err = io.ReadFull(c.r, buf)
		c.remaining -= int64(n)
		if err == nil && c.remaining == 0 {
			c.done = true
			return buf[:n], true, nil
		}
	} else {
		n, err = c.r.Read(buf)
	}
	switch {
	case errors.Is(err, io.EOF) && c.remaining <= 0:
		c.done = true
		return buf[:n], true, nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, false, fmt.Errorf("request body ended %d bytes early: %w", c.remaining, io.ErrUnexpectedEOF)
	case err != nil:
		return nil, false, err
	}
	return buf[:n], false, nil
}

// bytesBody replays a buffered body as one chunk.
type bytesBody struct {
	b    []byte
	done bool
}

func (b *bytesBody) next() ([]byte, bool, error) {
	if b.done {
		return nil, true, nil
	}
	b.done = true
	return b.b, true, nil
}

// processorError is a failure of an ext_proc server (unreachable, gRPC error, timeout, protocol
// violation), as opposed to a failure of the body it was fed.
type processorError struct {
	what string
	err  error
	// unsent says the exchange failed before its first message left: the stream could not be
	// opened or took nothing, so the processor has seen nothing of the request.
	unsent bool
}

func (e *processorError) Error() string { return e.what + ": " + e.err.Error() }
func (e *processorError) Unwrap() error { return e.err }

// immediate is an ext_proc ImmediateResponse: the processor answered the client itself.
type immediate struct {
	what string // the processor that answered: "bbr" or "epp"
	resp *extprocv3.ImmediateResponse
}

func (e *immediate) Error() string {
	return fmt.Sprintf("immediate response %d", e.resp.GetStatus().GetCode())
}

// sourceError wraps a failure of the body source feeding a processor, so that it is reported as
// the source's failure, not the processor's.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "request body: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// exchange is the data plane's side of one ext_proc stream in FULL_DUPLEX_STREAMED mode for
// request bodies, the mode upstream deploys BBR and the EPP with (llm-d-facts §2.2, §3).
//
// The request body is pumped to the processor from its own goroutine while the main goroutine
// waits for the header reply: a FULL_DUPLEX processor answers the headers only once it has seen
// the whole body, so waiting first would deadlock (llm-d-facts §7.2).
type exchange struct {
	what    string
	stream  extprocv3.ExternalProcessor_ProcessClient
	cancel  context.CancelFunc
	timeout time.Duration
	timer   *time.Timer
	expired atomic.Bool
	// finished is set once the exchange completed; closing then half-closes the stream so the
	// processor sees a clean end instead of a cancellation.
	finished atomic.Bool
	// responses says the processor also sees the response, so the request half is not the end.
	responses bool
	noBody    bool

	pumpDone chan struct{}
	pumpErr  error  // set before pumpDone closes
	sent     []byte // copy of the body pumped, when kept for a fail-open replay
}

// processingMode is what the gateway announces in protocol_config and lives by.
type processingMode struct {
	responseHeaders bool // send response headers (and then FULL_DUPLEX response bodies)
}

// openExchange opens an ext_proc stream and sends the request headers. The message timeout
// covers opening the stream too, so a processor that accepts connections but never answers
// cannot hold the request.
//
// The request body, when there is one, is pumped from its own goroutine while the caller waits
// for the header reply; keep is as for pump.
func openExchange(ctx context.Context, what string, client extprocv3.ExternalProcessorClient, timeout time.Duration,
	mode processingMode, r *http.Request, body bodySource, keep bool) (*exchange, error) {
	endOfStream := body == nil
	sctx, cancel := context.WithCancel(ctx)
	x := &exchange{what: what, cancel: cancel, timeout: timeout, pumpDone: make(chan struct{}), responses: mode.responseHeaders}
	x.arm()
	stream, err := client.Process(sctx)
	if err != nil {
		x.close()
		return nil, unsent(x.fail(err))
	}
	x.stream, x.noBody = stream, endOfStream
	// Header and trailer modes have no field here: the processor learns them from what arrives.
	respBody := filterv3.ProcessingMode_NONE
	if mode.responseHeaders {
		respBody = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	}
	first := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: extproc.RequestHeaderMap(r), EndOfStream: endOfStream,
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{
			RequestBodyMode:                         filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			ResponseBodyMode:                        respBody,
			SendBodyWithoutWaitingForHeaderResponse: true,
		},
	}
	if !endOfStream {
		// The timeout starts when the processor has everything it needs to answer.
		x.disarm()
	}
	if err := stream.Send(first); err != nil {
		x.close()
		return nil, unsent(x.fail(err))
	}
	if endOfStream {
		close(x.pumpDone)
		return x, nil
	}
	// A body that is one chunk (almost every inference request) is sent from here: the
	// processor answers nothing before it has it, so nothing is lost by not waiting for the
	// reply meanwhile, and the header and body messages leave together instead of from two
	// goroutines. A longer body is pumped from its own goroutine, since a processor that echoes
	// chunks as they come (BBR) blocks on flow control once the gateway stops receiving, which
	// it does while it sends.
	chunk, last, err := body.next()
	if err == nil && last {
		x.send(chunk, true, keep, true)
		close(x.pumpDone)
		return x, nil
	}
	go x.pump(body, chunk, last, err, keep)
	return x, nil
}

// arm starts the message timeout: the processor owes an answer from now on.
func (x *exchange) arm() {
	if x.timeout <= 0 {
		return
	}
	if x.timer == nil {
		x.timer = time.AfterFunc(x.timeout, func() { x.expired.Store(true); x.cancel() })
		return
	}
	x.timer.Reset(x.timeout)
}

func (x *exchange) disarm() {
	if x.timer != nil {
		x.timer.Stop()
	}
}

// close ends the stream; safe to call more than once.
func (x *exchange) close() {
	x.disarm()
	if x.finished.Load() && x.stream != nil {
		_ = x.stream.CloseSend()
	}
	x.cancel()
}

// fail turns a stream error into a processorError, naming a timeout as such.
func (x *exchange) fail(err error) error {
	var se *sourceError
	if errors.As(err, &se) {
		return err
	}
	if x.expired.Load() {
		err = fmt.Errorf("no answer within %s: %w", x.timeout, context.DeadlineExceeded)
	}
	return &processorError{what: x.what, err: err}
}

// unsent marks a processor failure as one that happened before anything was sent.
func unsent(err error) error {
	if pe, ok := err.(*processorError); ok {
		pe.unsent = true
	}
	return err
}

// pump feeds src to the processor as request_body messages, starting with the chunk already
// read (first, last, err: the result of src.next). With keep, the body is also kept (and read to
// its end even after the processor failed) so that a fail-open pool can replay it.
func (x *exchange) pump(src bodySource, first []byte, last bool, err error, keep bool) {
	defer close(x.pumpDone)
	sending := true
	chunk := first
	for {
		if err != nil {
			x.pumpErr = &sourceError{err: err}
			x.cancel()
			return
		}
		sending = x.send(chunk, last, keep, sending)
		if last || !sending && !keep {
			return
		}
		chunk, last, err = src.next()
	}
}

// send sends one body chunk while sending is true and keeps a copy with keep; it reports
// whether the stream still takes messages. A failed send only stops sending: the receiving side
// sees the stream's real error.
func (x *exchange) send(chunk []byte, last, keep, sending bool) bool {
	if keep {
		x.sent = append(x.sent, chunk...)
	}
	if !sending {
		return false
	}
	if last {
		x.arm()
	}
	msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: last},
	}}
	return x.stream.Send(msg) == nil
}

// waitPump waits for the pump to finish and returns the body source's error, if any.
func (x *exchange) waitPump() error {
	<-x.pumpDone
	return x.pumpErr
}

// recv receives the next message, reporting a failure of the pumped source in preference to
// the stream error it caused.
func (x *exchange) recv() (*extprocv3.ProcessingResponse, error) {
	resp, err := x.stream.Recv()
	if err == nil {
		if ir := resp.GetImmediateResponse(); ir != nil {
			return nil, &immediate{what: x.what, resp: ir}
		}
		return resp, nil
	}
	select {
	case <-x.pumpDone:
		if x.pumpErr != nil {
			return nil, x.pumpErr
		}
	default:
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the processor closed the stream early")
	}
	return nil, x.fail(err)
}

// requestHeaders waits for the answer to the request headers and applies its header mutation
// to h.
func (x *exchange) requestHeaders(h http.Header) (*extprocv3.ProcessingResponse, error) {
	resp, err := x.recv()
	if err != nil {
		return nil, err
	}
	if resp.GetRequestHeaders() == nil {
		return nil, x.fail(fmt.Errorf("protocol: expected a request_headers reply, got %T", resp.GetResponse()))
	}
	if err := extproc.ApplyHeaderMutation(h, resp.GetRequestHeaders().GetResponse().GetHeaderMutation()); err != nil {
		return nil, x.fail(err)
	}
	if x.noBody && !x.responses {
		x.finished.Store(true)
	}
	return resp, nil
}

// requestBody is the body the processor sends back: in FULL_DUPLEX_STREAMED mode every chunk
// comes as a streamed_response, the last one with end_of_stream.
type requestBody struct{ x *exchange }

func (b requestBody) next() ([]byte, bool, error) {
	resp, err := b.x.recv()
	if err != nil {
		return nil, false, err
	}
	br := resp.GetRequestBody()
	if br == nil {
		return nil, false, b.x.fail(fmt.Errorf("protocol: expected a request_body reply, got %T", resp.GetResponse()))
	}
	sr := br.GetResponse().GetBodyMutation().GetStreamedResponse()
	if sr == nil {
		return nil, false, b.x.fail(errors.New("protocol: a FULL_DUPLEX_STREAMED body reply without streamed_response"))
	}
	if sr.GetEndOfStream() {
		b.x.disarm()
		if !b.x.responses {
			b.x.finished.Store(true)
		}
	}
	return sr.GetBody(), sr.GetEndOfStream(), nil
}

// readAll collects a body source into one buffer, refusing more than limit bytes.
func readAll(src bodySource, limit int64) ([]byte, error) {
	var out []byte
	for {
		chunk, last, err := src.next()
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
		if int64(len(out)) > limit {
			return nil, &sourceError{err: &http.MaxBytesError{Limit: limit}}
		}
		if last {
			return out, nil
		}
	}
}

// respond relays the backend's response through the processor and to the client: the headers
// (with the endpoint that served the request in the envoy.lb metadata, as the EPP protocol asks
// of a data plane, llm-d-facts §2.4), then the body chunk by chunk. The body is sent without
// waiting for the header reply, as FULL_DUPLEX_STREAMED allows, which saves a round trip before
// the first byte. Every chunk the processor returns is flushed at once so that server-sent
// events reach the client as they are produced.
//
// If the processor fails before it answered the headers and failOpen is set, the response goes
// to the client without it: the chunks already read are kept until the header reply for that.
func (x *exchange) respond(w *responseWriter, resp *http.Response, served string, failOpen bool) error {
	msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: extproc.ResponseHeaderMap(resp.StatusCode, resp.Header)},
	}}
	if served != "" {
		msg.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.lb": {Fields: map[string]*structpb.Value{servedKey: structpb.NewStringValue(served)}},
		}}
	}
	x.arm()
	if err := x.stream.Send(msg); err != nil {
		if failOpen {
			return relayDirect(w, resp, nil)
		}
		return x.fail(err)
	}

	var mu sync.Mutex
	var kept []byte
	keeping := true
	var readErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		bp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bp)
		buf := *bp
		for {
			n, err := resp.Body.Read(buf)
			last := errors.Is(err, io.EOF)
			if err != nil && !last {
				readErr = err
				x.cancel()
				return
			}
			chunk := append([]byte(nil), buf[:n]...)
			mu.Lock()
			if keeping {
				kept = append(kept, chunk...)
			}
			mu.Unlock()
			if last {
				x.arm()
			}
			body := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: last},
			}}
			if x.stream.Send(body) != nil || last {
				return
			}
		}
	}()
	defer func() { <-done }()

	reply, err := x.recv()
	if err == nil && reply.GetResponseHeaders() == nil {
		err = x.fail(fmt.Errorf("protocol: expected a response_headers reply, got %T", reply.GetResponse()))
	}
	if err == nil {
		err = extproc.ApplyHeaderMutation(resp.Header, reply.GetResponseHeaders().GetResponse().GetHeaderMutation())
		if err != nil {
			err = x.fail(err)
		}
	}
	if err != nil {
		x.cancel()
		<-done
		if readErr != nil {
			return &backendError{err: readErr}
		}
		if _, isImmediate := errorsAs[*immediate](err); !failOpen || isImmediate {
			return err
		}
		return relayDirect(w, resp, kept)
	}
	mu.Lock()
	keeping, kept = false, nil
	mu.Unlock()

	// The processor may rewrite the body (model names), so its length is not known ahead:
	// chunked, as Envoy does once a processor streams a body.
	resp.Header.Del("Content-Length")
	writeHeader(w, resp)
	for {
		r, err := x.recv()
		if err != nil {
			<-done
			if readErr != nil {
				return &backendError{err: readErr}
			}
			return err
		}
		rb := r.GetResponseBody()
		if rb == nil {
			// Trailers replies and the like carry nothing for an HTTP/1.1 client.
			if r.GetResponseTrailers() != nil {
				continue
			}
			return x.fail(fmt.Errorf("protocol: expected a response_body reply, got %T", r.GetResponse()))
		}
		sr := rb.GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return x.fail(errors.New("protocol: a FULL_DUPLEX_STREAMED body reply without streamed_response"))
		}
		if len(sr.GetBody()) > 0 {
			if _, err := w.Write(sr.GetBody()); err != nil {
				return &clientGone{err: err}
			}
			if !sr.GetEndOfStream() {
				// The last chunk leaves with the end of the response, in the same write.
				w.Flush()
			}
		}
		if sr.GetEndOfStream() {
			x.disarm()
			x.finished.Store(true)
			return nil
		}
	}
}

// relayDirect sends the response to the client without the processor: the part already read,
// then the rest.
func relayDirect(w *responseWriter, resp *http.Response, head []byte) error {
	writeHeader(w, resp)
	if len(head) > 0 {
		if _, err := w.Write(head); err != nil {
			return &clientGone{err: err}
		}
		w.Flush()
	}
	return copyFlushing(w, resp.Body, -1)
}

// backendError is a failure reading the backend's response.
type backendError struct{ err error }

func (e *backendError) Error() string { return "reading the backend response: " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// clientGone is a failure writing to the client: nobody is left to answer.
type clientGone struct{ err error }

func (e *clientGone) Error() string { return "writing to the client: " + e.err.Error() }
func (e *clientGone) Unwrap() error { return e.err }

// conns keeps one gRPC client connection per processor address; gRPC multiplexes every
// request's stream over it.
type conns struct {
	mu sync.Mutex
	m  map[string]*conn
	// lastSweep is when idle picker connections were last looked for.
	lastSweep time.Time
}

type conn struct {
	cc *grpc.ClientConn
	// pinned connections (authz, BBR) are held by the Server for its whole life and never swept:
	// their lastUsed is not refreshed per request, only picker connections are looked up anew.
	pinned bool
	// lastUsed is the unix nanosecond of the last get, so that connections to pickers no route
	// names any more (a headless picker Service whose pod went away) are closed eventually.
	lastUsed atomic.Int64
	// active counts the requests using the connection now; a connection in use is never idle,
	// however long ago it was taken (a completion can stream for many minutes).
	active atomic.Int32
	// lastReset is the unix nanosecond of the last immediate reconnect, so that a picker that
	// stays down is dialled a few times a second, not once per request.
	lastReset atomic.Int64
}

// minResetInterval spaces immediate reconnects to one address.
const minResetInterval = 50 * time.Millisecond

// idleConnTimeout is how long a filter connection may go unused before it is closed.
const idleConnTimeout = 5 * time.Minute

// pin returns the connection to addr and keeps it open until closeAll.
func (c *conns) pin(addr string) (*grpc.ClientConn, error) {
	cc, err := c.get(addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[addr].pinned = true
	c.mu.Unlock()
	return cc, nil
}

// acquire is get for one request: the connection counts as in use until release is called.
func (c *conns) acquire(addr string) (cc *grpc.ClientConn, release func(), err error) {
	cc, err = c.get(addr)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	e := c.m[addr]
	c.mu.Unlock()
	e.active.Add(1)
	return cc, func() {
		e.lastUsed.Store(time.Now().UnixNano())
		e.active.Add(-1)
	}, nil
}

func (c *conns) get(addr string) (*grpc.ClientConn, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[addr]; ok {
		if e.lastUsed.Load() < now.Add(-time.Second).UnixNano() {
			e.lastUsed.Store(now.UnixNano())
		}
		return e.cc, nil
	}
	c.sweep(now)
	cc, err := grpc.NewClient(addr, extproc.DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
	}
	if c.m == nil {
		c.m = map[string]*conn{}
	}
	e := &conn{cc: cc}
	e.lastUsed.Store(now.UnixNano())
	c.m[addr] = e
	return cc, nil
}

// sweep closes the connections unused for idleConnTimeout, at most once a minute; it runs when
// a new address is dialled, which is when stale ones appear. Called with mu held.
func (c *conns) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < time.Minute {
		return
	}
	c.lastSweep = now
	for addr, e := range c.m {
		if !e.pinned && e.active.Load() == 0 && now.Sub(time.Unix(0, e.lastUsed.Load())) > idleConnTimeout {
			_ = e.cc.Close()
			delete(c.m, addr)
		}
	}
}

// awaitReconnect makes the connection to addr try again now instead of when its backoff ends,
// and waits up to wait for it to be ready. It reports whether it is.
//
// A connection that failed (the processor restarted, or its Service pointed at a pod that had
// just gone) sits in TRANSIENT_FAILURE for a growing backoff, and gRPC fails every stream at
// once meanwhile, although the processor may be back long before. gRPC's pick_first also keeps
// reporting TRANSIENT_FAILURE while it tries again, so there is no "connecting" state to wait
// out: the wait is bounded instead.
func (c *conns) awaitReconnect(ctx context.Context, addr string, wait time.Duration) bool {
	c.mu.Lock()
	e := c.m[addr]
	c.mu.Unlock()
	if e == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		switch st := e.cc.GetState(); st {
		case connectivity.Ready:
			return true
		case connectivity.Shutdown:
			return false
		case connectivity.Idle:
			e.cc.Connect()
		case connectivity.TransientFailure:
			now := time.Now().UnixNano()
			if last := e.lastReset.Load(); now-last >= int64(minResetInterval) && e.lastReset.CompareAndSwap(last, now) {
				e.cc.ResetConnectBackoff()
			}
		}
		st := e.cc.GetState()
		if st == connectivity.Ready {
			return true
		}
		if !e.cc.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, e := range c.m {
		_ = e.cc.Close()
		delete(c.m, addr)
	}
}
