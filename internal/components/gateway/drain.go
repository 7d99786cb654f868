package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Drain says how a stopping data plane lets go of its clients. Closing an idle keep-alive
// connection races with a client that is sending on it (that client reads EOF, and Go's and
// most HTTP clients do not retry a POST), so the data plane first keeps serving for Delay with
// `Connection: close` on every response and readiness failing: clients move to new connections,
// which the Service already sends to other pods. Only then does it stop accepting and give
// in-flight requests, streams of a long answer included, up to Timeout to finish.
type Drain struct {
	Delay   time.Duration
	Timeout time.Duration
}

// drainer is the state the handler, the readiness probe and the server share.
type drainer struct{ draining atomic.Bool }

// wrap asks the server to close each connection after its response once draining started.
func (d *drainer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// serveDraining serves h on ln until stop ends (the termination signal), drains as d says, and
// returns. ctx ending (another part of the data plane failed) stops it at once.
func serveDraining(ctx, stop context.Context, h http.Handler, ln net.Listener, d Drain, state *drainer) error {
	srv := &http.Server{Handler: state.wrap(h), ReadHeaderTimeout: 10 * time.Second}
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
	state.draining.Store(true)
	select {
	case <-time.After(d.Delay):
	case <-ctx.Done():
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
