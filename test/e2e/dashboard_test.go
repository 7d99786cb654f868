//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// tmuxSession runs a command in a detached tmux session on a private server socket, so the
// test never touches a user's own tmux.
type tmuxSession struct {
	socket, name string
}

func (s tmuxSession) run(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	return string(out), err
}

func (s tmuxSession) capture(t *testing.T) string {
	t.Helper()
	out, err := s.run("capture-pane", "-p", "-t", s.name)
	if err != nil {
		t.Fatalf("tmux capture-pane: %v: %s", err, out)
	}
	return out
}

func (s tmuxSession) keys(t *testing.T, keys ...string) {
	t.Helper()
	if out, err := s.run(append([]string{"send-keys", "-t", s.name}, keys...)...); err != nil {
		t.Fatalf("tmux send-keys %v: %v: %s", keys, err, out)
	}
}

// screenLine returns the first line of the screen that starts (after the selection marker)
// with prefix.
func screenLine(screen, prefix string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, "> "), prefix) {
			return l
		}
	}
	return ""
}

var readyCell = regexp.MustCompile(`^\s*>?\s*\S+\s+(\d+)/(\d+)\s`)

func TestDashboard(t *testing.T) {
	const m = "ministral-3b"
	f := features.New("dashboard").
		WithLabel("tier", "pr").WithLabel("area", "dashboard").
		Assess("in tmux, while `sandbox load` drives a model, the dashboard shows decisions naming real pods and the replica count rising", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if _, err := exec.LookPath("tmux"); err != nil {
				t.Fatal("tmux is not installed: run hack/setup-host.sh")
			}
			cs := clientset(t, cfg)
			start := listModels(ctx, t, cfg)[m]
			s := tmuxSession{socket: "sandbox-e2e-dashboard", name: "dash"}
			cmd := fmt.Sprintf("%s dashboard --name %s --kubeconfig %s", sb.SandboxBin, sb.Name, sb.Kubeconfig)
			if out, err := s.run("new-session", "-d", "-s", s.name, "-x", "120", "-y", "40", cmd); err != nil {
				t.Fatalf("tmux new-session: %v: %s", err, out)
			}
			defer s.run("kill-server")
			last := ""
			defer func() {
				if t.Failed() {
					t.Logf("last screen:\n%s", last)
				}
			}()
			eventually(t, time.Minute, "the models view lists the model as ready", func() (bool, string) {
				last = s.capture(t)
				line := screenLine(last, m)
				return readyCell.MatchString(line), line
			})
			t.Logf("before the load:\n%s", last)

			// 40 clients of 100-token answers against 5 slots per simulator: far above the
			// autoscaling threshold of 10 waiting requests per replica.
			loadCtx, stopLoad := context.WithCancel(ctx)
			defer stopLoad()
			load := exec.CommandContext(loadCtx, sb.SandboxBin, "load", "--model", m, "--concurrency", "40", "--duration", "150s",
				"--max-tokens", "100", "--name", sb.Name, "--kubeconfig", sb.Kubeconfig, "-o", "json")
			if err := load.Start(); err != nil {
				t.Fatalf("sandbox load: %v", err)
			}
			// Decisions on screen must be newer than this: the picker's backlog holds older ones.
			loadStart := time.Now().Add(-time.Second).Format("15:04:05")
			loadDone := make(chan error, 1)
			go func() { loadDone <- load.Wait() }()

			s.keys(t, "3")
			eventually(t, time.Minute, "routing decisions from the decision stream naming real pods", func() (bool, string) {
				last = s.capture(t)
				if !strings.Contains(last, "source: decision stream") {
					return false, "no decision-stream source line"
				}
				for _, p := range modelPods(ctx, t, cs, m) {
					for _, l := range strings.Split(last, "\n") {
						f := strings.Fields(strings.TrimLeft(l, "> "))
						// TIME MODEL POD STATUS ... (same day, same zone: string order is time order)
						if len(f) >= 4 && f[0] >= loadStart && f[1] == m && f[2] == p.Name && f[3] == "ok" {
							return true, ""
						}
					}
				}
				return false, "no decision row since " + loadStart + " names a pod of " + m
			})
			t.Logf("routing:\n%s", last)

			s.keys(t, "1")
			eventually(t, 3*time.Minute, "the replica count rising", func() (bool, string) {
				last = s.capture(t)
				line := screenLine(last, m)
				mm := readyCell.FindStringSubmatch(line)
				if mm == nil {
					return false, line
				}
				desired, _ := strconv.Atoi(mm[2])
				return desired > int(start.Replicas), line
			})
			t.Logf("models after scale-up:\n%s", last)
			s.keys(t, "4")
			eventually(t, 30*time.Second, "the scale-up on the scaling timeline with its metric", func() (bool, string) {
				last = s.capture(t)
				for _, l := range strings.Split(last, "\n") {
					f := strings.Fields(strings.TrimLeft(l, "> "))
					// TIME MODEL ↑ FROM→TO VALUE/THRESHOLD: the change and the reading behind it.
					if len(f) >= 5 && f[0] >= loadStart && f[1] == m && f[2] == "↑" && strings.HasSuffix(f[4], "/10") && f[4] != "0/10" {
						return true, ""
					}
				}
				return false, "no scale-up row"
			})
			t.Logf("scaling:\n%s", last)

			stopLoad()
			<-loadDone
			s.keys(t, "q")
			eventually(t, 10*time.Second, "q quits the dashboard", func() (bool, string) {
				out, err := s.run("list-sessions")
				return err != nil || !strings.Contains(out, s.name), out
			})

			// Later features expect the model at its minimum again.
			eventually(t, 5*time.Minute, "replicas back to the minimum", func() (bool, string) {
				cur := listModels(ctx, t, cfg)[m]
				return cur.Replicas == start.Replicas && cur.ReadyReplicas == cur.Replicas,
					fmt.Sprintf("replicas %d ready %d", cur.Replicas, cur.ReadyReplicas)
			})
			return ctx
		}).Feature()
	testenv.Test(t, f)
}
