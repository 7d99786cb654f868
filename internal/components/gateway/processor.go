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
	"google.golang.org/grpc/credentials/insecure"
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
func openExchange(ctx context.Context, what string, client extprocv3.ExternalProcessorClient, timeout time.Duration,
	mode processingMode, headers *corev3.HeaderMap, endOfStream bool) (*exchange, error) {
	sctx, cancel := context.WithCancel(ctx)
	x := &exchange{what: what, cancel: cancel, timeout: timeout, pumpDone: make(chan struct{})}
	x.arm()
	stream, err := client.Process(sctx)
	if err != nil {
		x.close()
		return nil, x.fail(err)
	}
	x.stream = stream
	// Header and trailer modes have no field here: the processor learns them from what arrives.
	respBody := filterv3.ProcessingMode_NONE
	if mode.responseHeaders {
		respBody = filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	}
	first := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: headers, EndOfStream: endOfStream,
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
		return nil, x.fail(err)
	}
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

// pump feeds src to the processor as request_body messages. With keep, the body is also kept
// (and read to its end even after the processor failed) so that a fail-open pool can replay it.
func (x *exchange) pump(src bodySource, keep bool) {
	defer close(x.pumpDone)
	sending := true
	for {
		chunk, last, err := src.next()
		if err != nil {
			x.pumpErr = &sourceError{err: err}
			x.cancel()
			return
		}
		if keep {
			x.sent = append(x.sent, chunk...)
		}
		if sending {
			if last {
				x.arm()
			}
			msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
				RequestBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: last},
			}}
			if err := x.stream.Send(msg); err != nil {
				// The receiving side sees the stream's real error; only stop sending here.
				sending = false
				if !keep {
					return
				}
			}
		}
		if last {
			return
		}
	}
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

// requestHeaders waits for the answer to the request headers.
func (x *exchange) requestHeaders() (*extprocv3.ProcessingResponse, error) {
	resp, err := x.recv()
	if err != nil {
		return nil, err
	}
	if resp.GetRequestHeaders() == nil {
		return nil, x.fail(fmt.Errorf("protocol: expected a request_headers reply, got %T", resp.GetResponse()))
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

// sendResponseHeaders hands the backend's response headers to the processor, with the endpoint
// that served the request in the envoy.lb metadata, as the EPP protocol asks of a data plane
// (llm-d-facts §2.4).
func (x *exchange) sendResponseHeaders(status int, h http.Header, served string, endOfStream bool) error {
	msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: extproc.ResponseHeaderMap(status, h), EndOfStream: endOfStream},
	}}
	if served != "" {
		msg.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.lb": {Fields: map[string]*structpb.Value{servedKey: structpb.NewStringValue(served)}},
		}}
	}
	x.arm()
	if err := x.stream.Send(msg); err != nil {
		return x.fail(err)
	}
	resp, err := x.recv()
	if err != nil {
		return err
	}
	if resp.GetResponseHeaders() == nil {
		return x.fail(fmt.Errorf("protocol: expected a response_headers reply, got %T", resp.GetResponse()))
	}
	x.disarm()
	if err := extproc.ApplyHeaderMutation(h, resp.GetResponseHeaders().GetResponse().GetHeaderMutation()); err != nil {
		return x.fail(err)
	}
	return nil
}

// streamResponseBody sends the backend's body to the processor chunk by chunk while writing
// the processor's streamed chunks to the client, flushing each one so that server-sent events
// reach the client as they are produced.
func (x *exchange) streamResponseBody(w io.Writer, flush func(), body io.Reader) error {
	var wg sync.WaitGroup
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			last := errors.Is(err, io.EOF)
			if err != nil && !last {
				readErr = err
				x.cancel()
				return
			}
			if n == 0 && !last {
				continue
			}
			if last {
				x.arm()
			}
			msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: append([]byte(nil), buf[:n]...), EndOfStream: last},
			}}
			if x.stream.Send(msg) != nil || last {
				return
			}
		}
	}()
	defer wg.Wait()
	for {
		resp, err := x.recv()
		if err != nil {
			wg.Wait()
			if readErr != nil {
				return &backendError{err: readErr}
			}
			return err
		}
		rb := resp.GetResponseBody()
		if rb == nil {
			// Trailers replies and the like carry nothing for an HTTP/1.1 client.
			if resp.GetResponseTrailers() != nil {
				continue
			}
			return x.fail(fmt.Errorf("protocol: expected a response_body reply, got %T", resp.GetResponse()))
		}
		sr := rb.GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return x.fail(errors.New("protocol: a FULL_DUPLEX_STREAMED body reply without streamed_response"))
		}
		if len(sr.GetBody()) > 0 {
			if _, err := w.Write(sr.GetBody()); err != nil {
				return &clientGone{err: err}
			}
			flush()
		}
		if sr.GetEndOfStream() {
			x.disarm()
			return nil
		}
	}
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
	m  map[string]*grpc.ClientConn
}

func (c *conns) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.m[addr]; ok {
		return cc, nil
	}
	// Plaintext h2c, as upstream runs the EPP (--secure-serving=false) and BBR in cluster
	// (upstream-production-stack §7).
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
	}
	if c.m == nil {
		c.m = map[string]*grpc.ClientConn{}
	}
	c.m[addr] = cc
	return cc, nil
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, cc := range c.m {
		_ = cc.Close()
		delete(c.m, addr)
	}
}
