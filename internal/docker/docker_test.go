package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// engine skips the test unless the docker CLI is installed and its engine answers.
func engine(t *testing.T) CLI {
	t.Helper()
	path, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, path, "info", "--format", "{{.ID}}").Run(); err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}
	return CLI{Path: path}
}

func TestBuildAndImageExists(t *testing.T) {
	d := engine(t)
	ctx := context.Background()
	tag := fmt.Sprintf("sandbox-docker-test:%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = exec.Command(d.Path, "rmi", "--force", tag).Run() })

	if d.ImageExists(ctx, tag) {
		t.Fatalf("%s exists before the build", tag)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Build(ctx, dir, "FROM scratch\nCOPY hello /hello\n", tag); err != nil {
		t.Fatal(err)
	}
	if !d.ImageExists(ctx, tag) {
		t.Fatalf("%s missing after the build", tag)
	}
}

func TestBuildErrorNamesImageAndCause(t *testing.T) {
	d := engine(t)
	tag := fmt.Sprintf("sandbox-docker-test:%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = exec.Command(d.Path, "rmi", "--force", tag).Run() })
	// COPY of a file the context lacks fails before anything is built.
	err := d.Build(context.Background(), t.TempDir(), "FROM scratch\nCOPY missing /missing\n", tag)
	if err == nil {
		t.Fatal("build of a missing file succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "building image "+tag) || !strings.Contains(msg, "missing") {
		t.Fatalf("error lacks the image or docker's reason: %v", err)
	}
}

func TestMissingBinary(t *testing.T) {
	d := CLI{Path: filepath.Join(t.TempDir(), "docker")}
	if d.ImageExists(context.Background(), "scratch") {
		t.Error("an absent docker binary reports an image")
	}
	if err := d.Build(context.Background(), t.TempDir(), "FROM scratch\n", "x:y"); err == nil || !strings.Contains(err.Error(), "building image x:y") {
		t.Errorf("build with an absent docker binary: %v", err)
	}
}
