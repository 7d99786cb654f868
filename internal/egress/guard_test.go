package egress

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// newNetnsGuard programs real iptables inside a throw-away network namespace, so the test
// exercises the kernel's rule handling without touching the host's firewall.
func newNetnsGuard(t *testing.T) (*Guard, func(bin string, args ...string) string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, bin := range []string{"ip", "iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	ns := fmt.Sprintf("sbx-guard-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run := func(ctx context.Context, bin string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, bin}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	show := func(bin string, args ...string) string {
		out, err := run(context.Background(), bin, args...)
		if err != nil {
			t.Fatalf("%s %v: %v %s", bin, args, err, out)
		}
		return out
	}
	return &Guard{Run: run, Families: []string{"iptables", "ip6tables"}}, show
}

func TestGuardInstallsRulesForBothFamilies(t *testing.T) {
	g, show := newNetnsGuard(t)
	ctx := context.Background()
	if err := g.Check(ctx); err == nil {
		t.Fatal("Check passed before Ensure")
	}
	if err := g.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		fwd := show(bin, "-S", "FORWARD")
		if !strings.Contains(fwd, "-A FORWARD -j DOCKER-USER") {
			t.Errorf("%s FORWARD does not jump to DOCKER-USER:\n%s", bin, fwd)
		}
		user := strings.Split(show(bin, "-S", "DOCKER-USER"), "\n")
		// first rules of DOCKER-USER are our jumps, docker0 then br-+
		if len(user) < 3 || user[1] != "-A DOCKER-USER -i docker0 -j SANDBOX-EGRESS" || user[2] != "-A DOCKER-USER -i br-+ -j SANDBOX-EGRESS" {
			t.Errorf("%s DOCKER-USER:\n%s", bin, strings.Join(user, "\n"))
		}
		chain := show(bin, "-S", Chain)
		for _, want := range []string{"-A SANDBOX-EGRESS -o docker0 -j RETURN", "-A SANDBOX-EGRESS -o br-+ -j RETURN", "-A SANDBOX-EGRESS -j REJECT"} {
			if !strings.Contains(chain, want) {
				t.Errorf("%s %s lacks %q:\n%s", bin, Chain, want, chain)
			}
		}
	}
	if err := g.Check(ctx); err != nil {
		t.Fatalf("Check after Ensure: %v", err)
	}
}

func TestGuardIsIdempotentAndRepairs(t *testing.T) {
	g, show := newNetnsGuard(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := g.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(show("iptables", "-S", "DOCKER-USER"), "SANDBOX-EGRESS"); n != 2 {
		t.Fatalf("want 2 jumps after 3 Ensure calls, got %d", n)
	}
	// Someone deletes the REJECT rule: Check notices, Ensure puts it back.
	show("iptables", "-D", Chain, "-j", "REJECT")
	if err := g.Check(ctx); err == nil {
		t.Fatal("Check did not notice the missing REJECT rule")
	}
	if err := g.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(show("iptables", "-S"), Chain) || strings.Contains(show("ip6tables", "-S"), Chain) {
		t.Fatal("Remove left rules behind")
	}
}
