// Package egress keeps sandbox clusters from sending packets off this machine.
//
// The offline profile's rule: no packet forwarded from a container bridge may leave through
// the host's uplink. Docker forwards container traffic through the FORWARD chain, and
// jumps first to DOCKER-USER, the chain it documents for user rules and never flushes.
// The guard hooks a chain of its own there that rejects everything entering from a container
// bridge (docker0, br-*) unless it also leaves through one, for IPv4 and IPv6. Traffic between
// containers, and to published ports on 127.0.0.1, is unaffected.
package egress

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Chain is the guard's own chain, jumped to from DOCKER-USER.
const Chain = "SANDBOX-EGRESS"

// bridges are the interface patterns of container bridges (iptables "+" is a wildcard).
var bridges = []string{"docker0", "br-+"}

// Runner runs an iptables-family command and returns its combined output.
type Runner func(ctx context.Context, bin string, args ...string) (string, error)

// ExecRunner runs the real binaries.
func ExecRunner(ctx context.Context, bin string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Guard installs, checks and removes the rules.
type Guard struct {
	Run Runner
	// Families are the binaries to program; both unless a test says otherwise.
	Families []string
}

// New returns a guard for iptables and ip6tables.
func New() *Guard {
	return &Guard{Run: ExecRunner, Families: []string{"iptables", "ip6tables"}}
}

// Ensure installs the rules idempotently. An error means the machine is NOT protected and
// no node may be started.
func (g *Guard) Ensure(ctx context.Context) error {
	for _, bin := range g.Families {
		if err := g.ensureFamily(ctx, bin); err != nil {
			return fmt.Errorf("egress guard (%s): %w; the offline profile refuses to start without it (run as root, with iptables installed)", bin, err)
		}
	}
	return nil
}

// rules are the guard chain's contents, in order.
func rules() [][]string {
	var r [][]string
	for _, b := range bridges {
		r = append(r, []string{"-o", b, "-j", "RETURN"})
	}
	return append(r, []string{"-j", "REJECT"})
}

func (g *Guard) ensureFamily(ctx context.Context, bin string) error {
	if _, err := g.Run(ctx, bin, "-w", "-L", "FORWARD", "-n"); err != nil {
		return fmt.Errorf("%s is not usable: %w", bin, err)
	}
	// Docker creates DOCKER-USER (and the jump from FORWARD) when it manages the family;
	// Docker 20.10 does not manage IPv6 by default, so create both ourselves if needed.
	if !g.chainExists(ctx, bin, "DOCKER-USER") {
		if _, err := g.Run(ctx, bin, "-w", "-N", "DOCKER-USER"); err != nil {
			return fmt.Errorf("creating DOCKER-USER: %w", err)
		}
	}
	if _, err := g.Run(ctx, bin, "-w", "-C", "FORWARD", "-j", "DOCKER-USER"); err != nil {
		if _, err := g.Run(ctx, bin, "-w", "-I", "FORWARD", "1", "-j", "DOCKER-USER"); err != nil {
			return fmt.Errorf("jumping from FORWARD to DOCKER-USER: %w", err)
		}
	}
	if !g.chainExists(ctx, bin, Chain) {
		if _, err := g.Run(ctx, bin, "-w", "-N", Chain); err != nil {
			return fmt.Errorf("creating %s: %w", Chain, err)
		}
	}
	// Rewrite the chain only when it differs, so re-runs leave counters alone.
	want := rules()
	if !g.chainMatches(ctx, bin, want) {
		if _, err := g.Run(ctx, bin, "-w", "-F", Chain); err != nil {
			return fmt.Errorf("flushing %s: %w", Chain, err)
		}
		for _, r := range want {
			if _, err := g.Run(ctx, bin, append([]string{"-w", "-A", Chain}, r...)...); err != nil {
				return fmt.Errorf("adding %v to %s: %w", r, Chain, err)
			}
		}
	}
	// The jumps go first in DOCKER-USER so no user rule can accept bridge traffic before us.
	for i := len(bridges) - 1; i >= 0; i-- {
		jump := []string{"-i", bridges[i], "-j", Chain}
		if _, err := g.Run(ctx, bin, append([]string{"-w", "-C", "DOCKER-USER"}, jump...)...); err == nil {
			continue
		}
		if _, err := g.Run(ctx, bin, append([]string{"-w", "-I", "DOCKER-USER", "1"}, jump...)...); err != nil {
			return fmt.Errorf("jumping from DOCKER-USER to %s: %w", Chain, err)
		}
	}
	return nil
}

func (g *Guard) chainExists(ctx context.Context, bin, chain string) bool {
	_, err := g.Run(ctx, bin, "-w", "-S", chain)
	return err == nil
}

func (g *Guard) chainMatches(ctx context.Context, bin string, want [][]string) bool {
	out, err := g.Run(ctx, bin, "-w", "-S", Chain)
	if err != nil {
		return false
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A "+Chain+" ") {
			got = append(got, normalizeRule(strings.TrimPrefix(l, "-A "+Chain+" ")))
		}
	}
	if len(got) != len(want) {
		return false
	}
	for i, r := range want {
		if got[i] != normalizeRule(strings.Join(r, " ")) {
			return false
		}
	}
	return true
}

// normalizeRule drops what iptables -S adds on its own (REJECT's default reject-with).
func normalizeRule(r string) string {
	r = strings.TrimSpace(r)
	if i := strings.Index(r, " --reject-with"); i >= 0 {
		r = r[:i]
	}
	return r
}

// Check reports whether the guard is fully installed, for `sandbox status`.
func (g *Guard) Check(ctx context.Context) error {
	var problems []string
	for _, bin := range g.Families {
		if !g.chainMatches(ctx, bin, rules()) {
			problems = append(problems, bin+": "+Chain+" missing or changed")
			continue
		}
		for _, b := range bridges {
			if _, err := g.Run(ctx, bin, "-w", "-C", "DOCKER-USER", "-i", b, "-j", Chain); err != nil {
				problems = append(problems, fmt.Sprintf("%s: no jump from DOCKER-USER for %s", bin, b))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Remove deletes the guard's jumps and chain (used by `down` when no sandbox is left).
func (g *Guard) Remove(ctx context.Context) error {
	var errs []error
	for _, bin := range g.Families {
		for _, b := range bridges {
			for {
				if _, err := g.Run(ctx, bin, "-w", "-D", "DOCKER-USER", "-i", b, "-j", Chain); err != nil {
					break
				}
			}
		}
		if g.chainExists(ctx, bin, Chain) {
			if _, err := g.Run(ctx, bin, "-w", "-F", Chain); err != nil {
				errs = append(errs, err)
			}
			if _, err := g.Run(ctx, bin, "-w", "-X", Chain); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
