// Package images builds the offline profile's one component image: a FROM-scratch image
// holding the static stackd binary. Its tag is the binary's content hash, so it is rebuilt
// (and reloaded into the nodes) only when the binary changed.
package images

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/inference-sandbox/sandbox/internal/docker"
)

// Repository is the local repository of the stackd image.
const Repository = "sandbox-stackd"

// EnvStackd names an explicit stackd binary.
const EnvStackd = "SANDBOX_STACKD"

// FindStackd locates the stackd binary: the explicit path, $SANDBOX_STACKD, next to the
// running executable, or on PATH.
func FindStackd(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv(EnvStackd)}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "stackd"))
	}
	if p, err := exec.LookPath("stackd"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(c)
		}
		if c == explicit || c == os.Getenv(EnvStackd) {
			return "", fmt.Errorf("stackd binary %s not found", c)
		}
	}
	return "", errors.New("stackd binary not found next to sandbox or on PATH; build it with `make build` (or pass --stackd PATH)")
}

// CheckStatic rejects a dynamically linked binary: the image has no libc.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not a Linux executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// Tag returns the image name for a binary: repository + first 12 hex digits of its sha256.
func Tag(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return Repository + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// EnsureStackd builds the stackd image unless an image with the binary's hash exists, and
// returns its name and whether it was built now.
func EnsureStackd(ctx context.Context, binary string) (string, bool, error) {
	if err := CheckStatic(binary); err != nil {
		return "", false, err
	}
	image, err := Tag(binary)
	if err != nil {
		return "", false, fmt.Errorf("hashing %s: %w", binary, err)
	}
	var d docker.CLI // the docker on PATH
	if d.ImageExists(ctx, image) {
		return image, false, nil
	}
	dir, err := os.MkdirTemp("", "sandbox-stackd-image-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", false, err
	}
	if err := os.WriteFile(filepath.Join(dir, "stackd"), data, 0o755); err != nil {
		return "", false, err
	}
	// Runs as an unprivileged user by default; nothing in it needs root.
	dockerfile := "FROM scratch\nCOPY stackd /stackd\nUSER 65532:65532\nENTRYPOINT [\"/stackd\"]\n"
	if err := d.Build(ctx, dir, dockerfile, image); err != nil {
		return "", false, err
	}
	return image, true, nil
}
