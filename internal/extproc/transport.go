package extproc

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
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

// KeepaliveTime is how long a client connection to a filter may carry open streams without
// hearing from the server before it pings; a peer that does not answer within KeepaliveTimeout
// is dropped, which fails its streams into the caller's failure mode and reconnects. Without it
// a picker pod that vanished without closing its sockets (node loss, a network namespace torn
// down) would hold every stream until the per-message timeout.
const (
	KeepaliveTime    = 10 * time.Second
	KeepaliveTimeout = 5 * time.Second
)

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
// Keepalive pings are sent only while streams are open (PermitWithoutStream false), which every
// gRPC server accepts under its default enforcement policy, so an upstream picker can replace
// ours without answering with GOAWAY too_many_pings.
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
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
	}
}

// ServerOptions are the transport options of the offline filters' gRPC servers (BBR, the
// endpoint picker): the same static windows as DialOptions, and an enforcement policy that
// accepts the data plane's keepalive pings.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2}),
	}
}
