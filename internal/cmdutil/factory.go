// Package cmdutil holds what every command shares: the IO streams, the global flags and
// the errors that carry an exit code.
package cmdutil

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/inference-sandbox/sandbox/internal/iostreams"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// Factory is passed to every command constructor; fields are read when the command runs,
// after global flags were parsed.
type Factory struct {
	IOStreams *iostreams.IOStreams
	// Name is the sandbox (and kind cluster) name, the global --name flag.
	Name string
	// Kubeconfig points at an existing cluster instead of the sandbox's own (--kubeconfig).
	Kubeconfig string
}

// DefaultName is the sandbox name when --name is not given.
const DefaultName = "sandbox"

// New returns a Factory wired to the process's streams.
func New() *Factory {
	return &Factory{IOStreams: iostreams.System(), Name: DefaultName}
}

// Status returns the progress printer; it writes to stderr so stdout stays for results.
func (f *Factory) Status() *progress.Status { return progress.New(f.IOStreams.ErrOut) }

// StateDir is where the sandbox keeps what it owns for one sandbox (its kubeconfig):
// $SANDBOX_STATE_DIR, else $XDG_STATE_HOME/sandbox, else ~/.local/state/sandbox.
func StateDir(name string) string {
	base := os.Getenv("SANDBOX_STATE_DIR")
	if base == "" {
		xdg := os.Getenv("XDG_STATE_HOME")
		if xdg == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				home = os.TempDir()
			}
			xdg = filepath.Join(home, ".local", "state")
		}
		base = filepath.Join(xdg, "sandbox")
	}
	return filepath.Join(base, name)
}

// KubeconfigPath is the kubeconfig of the sandbox, or the --kubeconfig override.
func (f *Factory) KubeconfigPath() string {
	if f.Kubeconfig != "" {
		return f.Kubeconfig
	}
	return filepath.Join(StateDir(f.Name), "kubeconfig")
}

// ErrSilent marks an error already reported to the user; main only sets the exit code.
var ErrSilent = errors.New("silent error")

// ExitError carries a specific exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }
