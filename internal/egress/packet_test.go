package egress

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// topology builds, in network namespaces of its own, a miniature Docker host:
//
//	ctr (10.77.0.2, fd77::2) ──veth── [host: bridge br-sbxt 10.77.0.1 | uplink up0 10.78.0.1] ──veth── outside (10.78.0.2)
//
// so the guard can be tested on real forwarded packets without touching this machine's
// own network. Every address lives inside namespaces the test creates and deletes.
type topology struct {
	t                  *testing.T
	host, ctr, outside string
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	id := os.Getpid() % 100000
	tp := &topology{t: t, host: fmt.Sprintf("sbxh%d", id), ctr: fmt.Sprintf("sbxc%d", id), outside: fmt.Sprintf("sbxo%d", id)}
	for _, ns := range []string{tp.host, tp.ctr, tp.outside} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create network namespace: %v %s", err, out)
		}
		ns := ns
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	script := []string{
		// links
		"ip link add veth-c netns " + tp.ctr + " type veth peer name veth-h netns " + tp.host,
		"ip link add up0 netns " + tp.host + " type veth peer name eth0 netns " + tp.outside,
		// host: a bridge named like Docker's user bridges, and an uplink
		"ip -n " + tp.host + " link add br-sbxt type bridge",
		"ip -n " + tp.host + " link set veth-h master br-sbxt",
		"ip -n " + tp.host + " addr add 10.77.0.1/24 dev br-sbxt",
		"ip -n " + tp.host + " addr add fd77::1/64 dev br-sbxt nodad",
		"ip -n " + tp.host + " addr add 10.78.0.1/24 dev up0",
		"ip -n " + tp.host + " addr add fd78::1/64 dev up0 nodad",
		"ip -n " + tp.host + " link set br-sbxt up",
		"ip -n " + tp.host + " link set veth-h up",
		"ip -n " + tp.host + " link set up0 up",
		"ip netns exec " + tp.host + " sysctl -qw net.ipv4.ip_forward=1",
		"ip netns exec " + tp.host + " sysctl -qw net.ipv6.conf.all.forwarding=1",
		// container
		"ip -n " + tp.ctr + " addr add 10.77.0.2/24 dev veth-c",
		"ip -n " + tp.ctr + " addr add fd77::2/64 dev veth-c nodad",
		"ip -n " + tp.ctr + " link set veth-c up",
		"ip -n " + tp.ctr + " link set lo up",
		"ip -n " + tp.ctr + " route add default via 10.77.0.1",
		"ip -n " + tp.ctr + " -6 route add default via fd77::1",
		// the world outside
		"ip -n " + tp.outside + " addr add 10.78.0.2/24 dev eth0",
		"ip -n " + tp.outside + " addr add fd78::2/64 dev eth0 nodad",
		"ip -n " + tp.outside + " link set eth0 up",
		"ip -n " + tp.outside + " route add 10.77.0.0/24 via 10.78.0.1",
		"ip -n " + tp.outside + " -6 route add fd77::/64 via fd78::1",
	}
	for _, line := range script {
		f := strings.Fields(line)
		if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
			t.Skipf("building the test topology (%s): %v %s", line, err, out)
		}
	}
	return tp
}

// inNetns runs fn with the calling thread in network namespace ns; sockets created by fn
// stay in that namespace.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic("cannot return to the original network namespace: " + err.Error())
		}
	}()
	fn()
}

func (tp *topology) listen(addr string) net.Listener {
	var l net.Listener
	var err error
	inNetns(tp.t, tp.outside, func() { l, err = net.Listen("tcp", addr) })
	if err != nil {
		tp.t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tp.t.Cleanup(func() { l.Close() })
	return l
}

// dialFromContainer connects from the "container" to addr through the "host".
func (tp *topology) dialFromContainer(addr string) error {
	var err error
	inNetns(tp.t, tp.ctr, func() {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
	})
	return err
}

func TestGuardStopsForwardedPackets(t *testing.T) {
	tp := newTopology(t)
	host := tp.host
	g := &Guard{Families: []string{"iptables", "ip6tables"}, Run: func(ctx context.Context, bin string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", host, bin}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}}
	v4 := tp.listen("10.78.0.2:8080").Addr().String()
	v6 := tp.listen("[fd78::2]:8080").Addr().String()

	// Without the guard the "container" reaches the outside: the topology really forwards.
	// Fresh IPv6 interfaces need a moment (duplicate address detection of the link-local
	// addresses) before the router answers neighbour solicitations, hence the retries.
	for _, addr := range []string{v4, v6} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			err := tp.dialFromContainer(addr)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("before the guard, %s should be reachable (the test topology is broken): %v", addr, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := g.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{v4, v6} {
		if err := tp.dialFromContainer(addr); err == nil {
			t.Errorf("with the guard, the container still reached %s", addr)
		} else {
			t.Logf("%s blocked: %v", addr, err)
		}
	}
	// Traffic that stays on the bridge is not affected: the container reaches the host's
	// bridge address (a published port lives there in Docker).
	var hostL net.Listener
	var err error
	inNetns(t, tp.host, func() { hostL, err = net.Listen("tcp", "10.77.0.1:8081") })
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	go func() {
		c, err := hostL.Accept()
		if err == nil {
			c.Close()
		}
	}()
	if err := tp.dialFromContainer("10.77.0.1:8081"); err != nil {
		t.Errorf("the guard blocked traffic to the host's own bridge address: %v", err)
	}
}
