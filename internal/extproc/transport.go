package extproc

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// The HTTP/2 flow-control windows of the filter connections. Setting them turns gRPC's
// bandwidth-delay-product estimator off: it pings the peer after a data frame whenever no ping is
// outstanding, which on a loopback or in-cluster link carrying one small exchange per request
// costs a ping and its ack (four syscalls) every few requests and buys nothing, since a window
// of this size is never the limit for bodies of at most 16 MiB spread over 62 kB messages. Large
// windows also keep window updates rare.
const (
	streamWindow = 1 << 20
	connWindow   = 8 << 20
)

// UserTimeout bounds how long data sent to a filter may stay unacknowledged by the peer's
// kernel before the connection is dropped (TCP_USER_TIMEOUT). A picker pod that vanished without
// closing its sockets (node loss, its network namespace torn down, a Service IP whose conntrack
// entry points at a deleted pod) then fails its streams into the caller's failure mode, and the
// connection is made anew, instead of every request using it hanging until its own timeout. It is
// a TCP-level guard, not gRPC keepalive pings: a gRPC server's default policy answers pings more
// often than every 5 minutes with GOAWAY too_many_pings, which would cut every stream of an
// upstream picker, and pings on a busy connection buy nothing. A slow processor is unaffected:
// acknowledgements come from the kernel.
const UserTimeout = 10 * time.Second

// DialOptions are the client options the gateway uses for its filters (ext_authz, BBR, endpoint
// pickers): plaintext h2c, as upstream runs the EPP (--secure-serving=false) and BBR in cluster
// (upstream-production-stack §7).
//
// Retries are off: an ext_proc exchange is never replayed by gRPC (a retried stream is a new
// request to the processor); the gateway decides itself when a new stream is safe. gRPC's
// transparent retry of streams the server never saw stays on.
//
// The reconnect backoff is capped at 2 s instead of gRPC's 120 s: a filter that restarts must be
// used again as soon as it is back, while requests in between fail fast into the failure mode.
//
// Connections are dialled with UserTimeout and the usual TCP keepalive of Go's dialer.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithContextDialer(dial),
	}
}

// ServerOptions are the transport options of the offline filters' gRPC servers (BBR, the
// endpoint picker): the same static windows as DialOptions.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
	}
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Control: setUserTimeout}
	return d.DialContext(ctx, "tcp", addr)
}
