package extproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// DrainTimeout bounds how long a stopping server waits for in-flight streams. ext_proc streams
// live as long as the HTTP request they serve, so a graceful stop alone could wait forever on a
// slow client; after this the remaining streams are cut and the data plane applies its failure
// mode.
const DrainTimeout = 5 * time.Second

// ServeGRPC serves srv on ln until ctx ends, then drains it for at most DrainTimeout. It returns
// nil after a stop caused by ctx and the serve error otherwise.
func ServeGRPC(ctx context.Context, srv *grpc.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving gRPC on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(DrainTimeout):
		srv.Stop()
		<-stopped
	}
	<-errc
	return nil
}

// ServeHTTP serves h on ln until ctx ends, then shuts the server down within DrainTimeout.
func ServeHTTP(ctx context.Context, h http.Handler, ln net.Listener) error {
	return ServeHTTPDraining(context.Background(), ctx, h, ln, HTTPDrain{Timeout: DrainTimeout})
}

// HTTPDrain says how a stopping HTTP server lets go of its clients. Closing an idle keep-alive
// connection races with a client that is sending on it (that client reads EOF, and Go's and
// most HTTP clients do not retry a POST), so for Delay the server keeps serving with
// `Connection: close` on every response: clients move to new connections, which a Service
// already sends to other pods. Only then does it stop accepting and give in-flight requests
// up to Timeout to finish.
type HTTPDrain struct {
	Delay, Timeout time.Duration
	// Draining, when set, turns true at the stop signal (for a readiness probe).
	Draining *atomic.Bool
}

// ServeHTTPDraining serves h on ln until stop ends (the termination signal), drains as d says,
// and returns. ctx ending (another part of the process failed) stops it at once.
func ServeHTTPDraining(ctx, stop context.Context, h http.Handler, ln net.Listener, d HTTPDrain) error {
	draining := d.Draining
	if draining == nil {
		draining = new(atomic.Bool)
	}
	if d.Delay > 0 {
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		_ = srv.Close()
		<-errc
		return nil
	case <-stop.Done():
	}
	draining.Store(true)
	if d.Delay > 0 {
		select {
		case <-time.After(d.Delay):
		case <-ctx.Done():
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), d.Timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Listen opens the TCP listener of one of a component's ports; what names it in the error.
// An empty host binds all interfaces, port 0 picks a free port.
func Listen(ctx context.Context, host string, port int, what string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listening for %s on port %d: %w", what, port, err)
	}
	return ln, nil
}
