// Package keda runs real KEDA in the offline profile: its operator and metrics adapter are
// compiled from the github.com/kedacore/keda/v2 module (through the Go module proxy, never a
// container registry) into one FROM-scratch image, and installed with this package's own
// manifests, CRDs read from the module cache, and certificates made at install time.
package keda

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/inference-sandbox/sandbox/internal/versions"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/inference-sandbox/sandbox/internal/docker"
	"github.com/inference-sandbox/sandbox/internal/nodeimage"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

const (
	// Module is KEDA's Go module.
	Module = "github.com/kedacore/keda/v2"
	// Version is the KEDA release built and installed (pinned in internal/versions). It
	// brings its own Kubernetes libraries (v0.36) in its build module, so the sandbox's own
	// go.mod is unaffected.
	Version = versions.KEDA
	// Repository is the local image repository.
	Repository = "sandbox-keda"
)

// KEDA's go.mod replaces one module with a fork; replace directives bind only the main
// module, so the build module must restate it or the build fails to resolve.
var replaces = map[string]string{
	"github.com/nexus-rpc/nexus-proto-annotations": "github.com/nexus-rpc/nexus-proto-annotations v0.1.1-0.20260629224316-835bd8d49cb4",
}

// Binaries in the image, by path inside it, and the package each is built from.
var binaries = []struct{ name, pkg string }{
	{"keda", Module + "/cmd/operator"},
	{"keda-adapter", Module + "/cmd/adapter"},
}

// BuildOptions configures Ensure.
type BuildOptions struct {
	// CacheDir holds the build module and binaries; DefaultCacheDir() when empty.
	CacheDir string
	Status   *progress.Status
	// Docker builds and finds the image; the docker on PATH when zero.
	Docker docker.CLI
	// Force rebuilds the binaries and the image.
	Force bool
}

// DefaultCacheDir is the keda directory next to the node image's cache
// (~/.cache/sandbox/keda), so one `rm -rf ~/.cache/sandbox` clears every build.
func DefaultCacheDir() string {
	return filepath.Join(filepath.Dir(nodeimage.DefaultCacheDir()), "keda")
}

// goMod is the build module's go.mod.
func goMod() string {
	var b strings.Builder
	fmt.Fprintf(&b, "module sandbox-keda-build\n\ngo 1.26.0\n\nrequire %s %s\n", Module, Version)
	for from, to := range replaces {
		fmt.Fprintf(&b, "\nreplace %s => %s\n", from, to)
	}
	return b.String()
}

func toolsGo() string {
	var b strings.Builder
	b.WriteString("//go:build tools\n\n// Package tools pins the KEDA commands so `go mod tidy` keeps their dependencies.\npackage tools\n\nimport (\n")
	for _, bin := range binaries {
		fmt.Fprintf(&b, "\t_ %q\n", bin.pkg)
	}
	b.WriteString(")\n")
	return b.String()
}

func ldflags() string {
	return "-s -w -X " + Module + "/version.Version=" + strings.TrimPrefix(Version, "v") +
		" -X " + Module + "/version.GitCommit=sandbox-offline-build"
}

// ImageName is derived from everything that decides the binaries' content (KEDA version,
// build module, linker flags, Go version), so a cached image is reused without hashing
// 400 MB of binaries, and any change to those inputs yields a new tag.
func ImageName() string {
	h := sha256.New()
	for _, s := range []string{goMod(), toolsGo(), ldflags(), runtime.Version(), dockerfile} {
		io.WriteString(h, s)
		h.Write([]byte{0})
	}
	return Repository + ":" + Version + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// Both binaries run as an unprivileged user; KEDA needs no root and writes only to /tmp,
// which the manifests mount as an emptyDir.
const dockerfile = "FROM scratch\nCOPY keda /keda\nCOPY keda-adapter /keda-adapter\nUSER 65532:65532\nENTRYPOINT [\"/keda\"]\n"

// Ensure builds the KEDA image unless it exists, and returns its name. The first build
// compiles KEDA (about 5 minutes on 2 cores with a warm module cache); later calls return
// in well under a second.
func Ensure(ctx context.Context, opts BuildOptions) (string, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	image := ImageName()
	if !opts.Force && opts.Docker.ImageExists(ctx, image) {
		opts.Status.Start("KEDA %s image %s", Version, image).Skip("cached")
		return image, nil
	}
	binDir := filepath.Join(opts.CacheDir, "bin", strings.TrimPrefix(image, Repository+":"))
	step := opts.Status.Start("Building KEDA %s operator and metrics adapter from the Go module (first run 5-10 min)", Version)
	if err := step.End(buildBinaries(ctx, opts, binDir)); err != nil {
		return "", fmt.Errorf("building KEDA %s: %w", Version, err)
	}
	step = opts.Status.Start("Assembling image %s", image)
	if err := step.End(buildImage(ctx, opts.Docker, binDir, image)); err != nil {
		return "", fmt.Errorf("building the KEDA image: %w", err)
	}
	return image, nil
}

func buildBinaries(ctx context.Context, opts BuildOptions, binDir string) error {
	if !opts.Force && allBuilt(binDir) {
		return nil
	}
	src := filepath.Join(opts.CacheDir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{"go.mod": goMod(), "tools.go": toolsGo()} {
		// Rewritten only on change, so go.sum and the build cache stay valid between runs.
		if old, err := os.ReadFile(filepath.Join(src, name)); err == nil && string(old) == content {
			continue
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	env := []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off", "GOOS=linux"}
	opts.Status.Infof("resolving KEDA's modules through the module proxy")
	if err := runGo(ctx, opts.Status, src, env, nil, "mod", "tidy"); err != nil {
		return fmt.Errorf("resolving modules: %w", err)
	}
	tmp := binDir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, bin := range binaries {
		// One binary at a time so the progress line names what is compiling; the second
		// reuses most of the first's packages from the build cache.
		opts.Status.Infof("compiling %s", bin.pkg)
		var n atomic.Int64
		args := []string{"build", "-v", "-trimpath", "-ldflags", ldflags(), "-o", filepath.Join(tmp, bin.name), bin.pkg}
		if err := runGo(ctx, opts.Status, src, env, &n, args...); err != nil {
			return fmt.Errorf("compiling %s: %w", bin.pkg, err)
		}
	}
	if err := os.RemoveAll(binDir); err != nil {
		return err
	}
	return os.Rename(tmp, binDir)
}

func allBuilt(dir string) bool {
	for _, b := range binaries {
		if fi, err := os.Stat(filepath.Join(dir, b.name)); err != nil || fi.Size() == 0 {
			return false
		}
	}
	return true
}

// runGo runs the go command in dir. With counter set it reads `go build -v` output (one
// line per package compiled) and reports the count every 20 seconds, so a user watching a
// five-minute build sees it move.
func runGo(ctx context.Context, status *progress.Status, dir string, env []string, counter *atomic.Int64, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var tail bytes.Buffer
	pr, pw := io.Pipe()
	// One pipe for both streams: the go command reports progress and errors on stderr.
	cmd.Stdout = pw
	cmd.Stderr = pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if counter != nil && !strings.HasPrefix(line, "#") && !strings.Contains(line, " ") {
				counter.Add(1)
				continue
			}
			tail.WriteString(line + "\n")
			if tail.Len() > 64<<10 {
				tail.Next(tail.Len() - 32<<10)
			}
		}
	}()
	stop := make(chan struct{})
	if counter != nil {
		go func() {
			t := time.NewTicker(20 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					status.Infof("%d packages compiled", counter.Load())
				}
			}
		}()
	}
	err := cmd.Run()
	pw.Close()
	<-done
	close(stop)
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args[:min(len(args), 3)], " "), err, lastLines(tail.String(), 20))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildImage assembles the image from the binaries in binDir.
func buildImage(ctx context.Context, d docker.CLI, binDir, image string) error {
	dir, err := os.MkdirTemp("", "sandbox-keda-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, b := range binaries {
		// Hard links keep the 400 MB context off the disk a second time when it can.
		if err := os.Link(filepath.Join(binDir, b.name), filepath.Join(dir, b.name)); err != nil {
			if err := copyFile(filepath.Join(binDir, b.name), filepath.Join(dir, b.name)); err != nil {
				return err
			}
		}
	}
	return d.Build(ctx, dir, dockerfile, image)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
