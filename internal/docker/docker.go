// Package docker builds images with the docker CLI and asks it whether an image exists: the
// two things the node image, the KEDA image and the stackd image each need from the local
// engine.
package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CLI runs the docker command-line client.
type CLI struct {
	// Path is the docker binary; "docker", looked up on PATH, when empty.
	Path string
}

func (c CLI) path() string {
	if c.Path == "" {
		return "docker"
	}
	return c.Path
}

// ImageExists reports whether the engine has image (a name:tag or an ID). A failing docker
// command, an unreachable engine included, counts as absent: the caller then builds, and the
// build reports why docker fails.
func (c CLI) ImageExists(ctx context.Context, image string) bool {
	return exec.CommandContext(ctx, c.path(), "image", "inspect", "--format", "{{.Id}}", image).Run() == nil
}

// Build writes dockerfile into dir (created if missing) as its Dockerfile and builds dir as
// the image tag. On failure the error carries what docker printed.
func (c CLI) Build(ctx context.Context, dir, dockerfile, tag string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, c.path(), "build", "-q", "-t", tag, dir)
	// The legacy builder is what Debian's docker.io has; BuildKit would need buildx. The
	// sandbox's images have no RUN step, so it also works on an engine without network access.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	// -q keeps a good build quiet; a failed one prints its steps and the reason: a few lines,
	// since no step runs a command.
	if out, err := cmd.CombinedOutput(); err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return fmt.Errorf("building image %s: %w: %s", tag, err, msg)
		}
		return fmt.Errorf("building image %s: %w", tag, err)
	}
	return nil
}
