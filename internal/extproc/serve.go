package extproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
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
