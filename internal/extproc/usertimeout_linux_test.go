package extproc

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDialSetsUserTimeout checks on a real loopback connection that filter connections carry
// TCP_USER_TIMEOUT, the guard against a picker that vanished without closing its sockets.
func TestDialSetsUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil || gerr != nil {
		t.Fatalf("reading TCP_USER_TIMEOUT: %v %v", err, gerr)
	}
	if got != int(UserTimeout.Milliseconds()) {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want %d", got, UserTimeout.Milliseconds())
	}
}
