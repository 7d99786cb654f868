package nodeimage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/progress"
)

// run executes a command, keeping its combined output; on failure the error carries the
// last lines of that output, which is what a user needs to see to act.
func run(ctx context.Context, _ *progress.Status, env []string, name string, args ...string) error {
	_, err := output(ctx, env, nil, name, args...)
	return err
}

// output runs a command and returns its stdout; stderr goes into the error on failure.
func output(ctx context.Context, env []string, stdin io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &tailWriter{buf: &stderr, max: 64 << 10}
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{Command: name + " " + strings.Join(args, " "), Err: err, Output: lastLines(stdout.String()+stderr.String(), 15)}
	}
	return stdout.Bytes(), nil
}

// CommandError is a failed external command with the tail of what it printed.
type CommandError struct {
	Command string
	Err     error
	Output  string
}

func (e *CommandError) Error() string {
	cmd := e.Command
	if len(cmd) > 160 {
		cmd = cmd[:157] + "..."
	}
	if e.Output == "" {
		return fmt.Sprintf("%s: %v", cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v\n%s", cmd, e.Err, indent(e.Output))
}

func (e *CommandError) Unwrap() error { return e.Err }

// tailWriter keeps at most max bytes, dropping the oldest: builds can print megabytes.
type tailWriter struct {
	buf *bytes.Buffer
	max int
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), " \t"); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// hostTool is a program the build needs on the host, and the package that provides it.
type hostTool struct{ bin, pkg string }

var hostTools = []hostTool{
	{"go", "Go 1.26 (https://go.dev/dl)"},
	{"docker", "docker.io (run hack/setup-docker.sh)"},
	{"debootstrap", "debootstrap"},
	{"containerd", "containerd"},
	{"ctr", "containerd"},
	{"tar", "tar"},
	{"chroot", "coreutils"},
}

func checkHostTools() error {
	var missing []string
	pkgs := map[string]bool{}
	for _, t := range hostTools {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, t.bin)
			pkgs[t.pkg] = true
		}
	}
	if len(missing) == 0 {
		if os.Geteuid() != 0 {
			return errors.New("building the node image needs root (debootstrap, chroot and a private containerd); run it with sudo")
		}
		return nil
	}
	var list []string
	for p := range pkgs {
		list = append(list, p)
	}
	return fmt.Errorf("building the node image needs %s on this machine; install: %s (or run `make up`, which sets up a Debian host)",
		strings.Join(missing, ", "), strings.Join(list, ", "))
}
