package extproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	}
	return nil
}
