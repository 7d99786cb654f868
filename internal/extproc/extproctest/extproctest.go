// Package extproctest runs servers on loopback for component tests: a real listener, the server
// stopped and waited for when the test ends, so goroutine-leak checks see a quiet process.
package extproctest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Listen returns a listener on a free loopback port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	return ln
}

// Run calls serve in the background until the test ends, then cancels its context and waits for
// it; an error from serve fails the test.
func Run(t testing.TB, serve func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
}

// Dial connects a plaintext gRPC client to ln, closed when the test ends (before a server
// started earlier with Run stops, since cleanups run last-in first-out).
func Dial(t testing.TB, ln net.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(ln.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("dialing %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
