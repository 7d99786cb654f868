// Package nodeimage builds the offline profile's kind node image on this machine, with no
// container registry: Kubernetes, etcd, CoreDNS, crictl and pause are compiled from the Go
// module proxy, the root file system is a Debian debootstrap, and the control-plane images
// kubeadm expects are built FROM scratch and preloaded into the image's containerd.
// The recipe follows shared/facts/offline-kind.md §3.
//
// Every stage caches its output under the cache directory, and the final image's tag carries
// a hash of the recipe, so a second build with the image present takes a docker inspect.
package nodeimage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/docker"
	"github.com/inference-sandbox/sandbox/internal/progress"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

//go:embed all:files
var files embed.FS

// Repository is the local image repository node images are tagged in.
const Repository = "sandbox-node"

// recipeRevision changes whenever the build steps change in a way the embedded files and
// versions do not capture, so that old images are not reused.
const recipeRevision = "3"

// Options configure a build.
type Options struct {
	// KubernetesVersion to build, e.g. "v1.34.4". Only the v1.34 line works on cgroup v1 hosts.
	KubernetesVersion string
	// CacheDir holds the compiled binaries, the Debian root file system and scratch space.
	CacheDir string
	// Mirror is the Debian archive debootstrap downloads from.
	Mirror string
	// Force rebuilds the image even when it exists (stage caches are still used).
	Force bool
	// Status receives one line per stage.
	Status *progress.Status
}

// DefaultCacheDir is $XDG_CACHE_HOME/sandbox/nodeimage (or ~/.cache/...).
func DefaultCacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "sandbox", "nodeimage")
}

// DefaultMirror is the Debian archive used when the host's apt sources name none.
const DefaultMirror = "http://deb.debian.org/debian"

func (o *Options) setDefaults() {
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = versions.Kubernetes
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Mirror == "" {
		o.Mirror = hostDebianMirror()
	}
	if o.Status == nil {
		o.Status = progress.Discard()
	}
}

// ImageName is the tag of the node image for a Kubernetes version with this recipe.
func ImageName(kubernetesVersion string) string {
	if kubernetesVersion == "" {
		kubernetesVersion = versions.Kubernetes
	}
	return fmt.Sprintf("%s:%s-%s", Repository, kubernetesVersion, recipeHash(kubernetesVersion))
}

// recipeHash covers every input of the image: embedded files, pinned versions, packages.
func recipeHash(kubernetesVersion string) string {
	h := sha256.New()
	fmt.Fprintln(h, recipeRevision, kubernetesVersion, versions.Etcd, versions.CoreDNS, versions.Crictl,
		versions.Pause, versions.Kind, versions.DebianSuite, strings.Join(debianPackages, ","))
	var paths []string
	_ = fs.WalkDir(files, "files", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	for _, p := range paths {
		b, _ := files.ReadFile(p)
		fmt.Fprintln(h, p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Build makes sure the node image exists and returns its name.
func Build(ctx context.Context, opts Options) (string, error) {
	opts.setDefaults()
	if !strings.HasPrefix(opts.KubernetesVersion, "v1.34.") {
		return "", fmt.Errorf("kubernetes %s: the offline node image supports v1.34.x only (v1.35+ refuses cgroup v1 hosts)", opts.KubernetesVersion)
	}
	image := ImageName(opts.KubernetesVersion)
	b := &builder{opts: opts, image: image}
	if !opts.Force && b.docker.ImageExists(ctx, image) {
		opts.Status.Start("Node image %s", image).Skip("cached")
		return image, nil
	}
	if err := checkHostTools(); err != nil {
		return "", err
	}
	stages := []struct {
		name string
		run  func(context.Context) error
	}{
		{fmt.Sprintf("Building Kubernetes %s binaries (first run takes 10-15 min)", opts.KubernetesVersion), b.buildKubernetes},
		{fmt.Sprintf("Building etcd %s, CoreDNS %s, crictl %s and pause", versions.Etcd, versions.CoreDNS, versions.Crictl), b.buildAddons},
		{fmt.Sprintf("Creating the Debian %s root file system", versions.DebianSuite), b.buildRootfs},
		{"Laying out the node file system", b.layout},
		{"Building and preloading the control-plane images", b.preloadImages},
		{fmt.Sprintf("Assembling node image %s", image), b.assemble},
	}
	for _, s := range stages {
		step := opts.Status.Start("%s", s.name)
		if err := step.End(s.run(ctx)); err != nil {
			return "", fmt.Errorf("node image: %s: %w", strings.SplitN(s.name, " (", 2)[0], err)
		}
	}
	return image, nil
}

type builder struct {
	opts  Options
	image string
	// docker is the docker on PATH, which checkHostTools requires.
	docker docker.CLI
	// work is the per-build copy of the root file system that becomes the image.
	work string
}

func (b *builder) binDir() string {
	return filepath.Join(b.opts.CacheDir, "bin", b.opts.KubernetesVersion)
}

func (b *builder) srcDir(name string) string {
	return filepath.Join(b.opts.CacheDir, "src", name)
}
