package nodeimage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/inference-sandbox/sandbox/internal/versions"
)

// controlPlaneImage is one image kubeadm runs, built FROM scratch around one static binary.
type controlPlaneImage struct {
	ref    string // the exact name kubeadm asks containerd for
	binary string // file in the bin dir
	path   string // where the image's entrypoint lives
}

func (b *builder) controlPlaneImages() []controlPlaneImage {
	v := b.opts.KubernetesVersion
	// kubeadm's static pods run `command: [kube-apiserver, ...]`, so those binaries must be
	// on PATH; CoreDNS' Deployment passes only args, so its binary is the entrypoint at /.
	return []controlPlaneImage{
		{"registry.k8s.io/kube-apiserver:" + v, "kube-apiserver", "/usr/local/bin/kube-apiserver"},
		{"registry.k8s.io/kube-controller-manager:" + v, "kube-controller-manager", "/usr/local/bin/kube-controller-manager"},
		{"registry.k8s.io/kube-scheduler:" + v, "kube-scheduler", "/usr/local/bin/kube-scheduler"},
		{"registry.k8s.io/etcd:" + versions.EtcdImageTag, "etcd", "/usr/local/bin/etcd"},
		{"registry.k8s.io/coredns/coredns:" + versions.CoreDNS, "coredns", "/coredns"},
		{"registry.k8s.io/pause:" + versions.Pause, "pause", "/pause"},
	}
}

func (b *builder) kubeProxyRef() string {
	return "registry.k8s.io/kube-proxy:" + b.opts.KubernetesVersion
}

const scratchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (b *builder) preloadImages(ctx context.Context) error {
	ctxDir := filepath.Join(b.opts.CacheDir, "work", "images")
	_ = os.RemoveAll(ctxDir)
	refs := []string{}
	for _, img := range b.controlPlaneImages() {
		dir := filepath.Join(ctxDir, img.binary)
		if err := copyFile(filepath.Join(b.binDir(), img.binary), filepath.Join(dir, "bin"), 0o755); err != nil {
			return err
		}
		dockerfile := fmt.Sprintf("FROM scratch\nCOPY bin %s\nENV PATH=%s\nENTRYPOINT [%q]\n", img.path, scratchPath, img.path)
		if err := b.docker.Build(ctx, dir, dockerfile, img.ref); err != nil {
			return err
		}
		refs = append(refs, img.ref)
	}
	if err := b.buildKubeProxyImage(ctx, filepath.Join(ctxDir, "kube-proxy")); err != nil {
		return err
	}
	refs = append(refs, b.kubeProxyRef())

	archive := filepath.Join(ctxDir, "images.tar")
	if err := run(ctx, nil, nil, "docker", append([]string{"save", "-o", archive}, refs...)...); err != nil {
		return err
	}
	return b.importIntoRootfs(ctx, archive)
}

// buildKubeProxyImage: kube-proxy execs iptables/nft, so its image carries both iptables
// backends, nft, conntrack and a shell, with their shared libraries and the dlopen()ed
// xtables extensions (and *their* libraries: libxt_statistic.so needs libm), all taken from
// the node's own Debian root file system.
func (b *builder) buildKubeProxyImage(ctx context.Context, dir string) error {
	root := filepath.Join(dir, "root")
	R := b.work
	for _, d := range []string{"usr/sbin", "usr/local/bin", "etc", "bin", "run", "tmp", "lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(filepath.Join(b.binDir(), "kube-proxy"), filepath.Join(root, "usr/local/bin/kube-proxy"), 0o755); err != nil {
		return err
	}
	exes := []string{"/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi", "/usr/sbin/nft", "/usr/sbin/conntrack", "/bin/dash"}
	extensions, _ := filepath.Glob(filepath.Join(R, "usr/lib/x86_64-linux-gnu/xtables/*.so"))
	var withLibs []string
	for _, e := range exes {
		if err := copyResolved(R, e, root, 0o755); err != nil {
			return err
		}
		withLibs = append(withLibs, e)
	}
	for _, e := range extensions {
		rel := "/" + strings.TrimPrefix(e, R+"/")
		if err := copyResolved(R, rel, root, 0o644); err != nil {
			return err
		}
		withLibs = append(withLibs, rel)
	}
	for _, f := range withLibs {
		libs, err := sharedLibs(ctx, R, f)
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if _, err := os.Stat(filepath.Join(root, lib)); err == nil {
				continue
			}
			if err := copyResolved(R, lib, root, 0o755); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		_ = copyResolved(R, f, root, 0o644)
	}
	_ = os.Symlink("dash", filepath.Join(root, "bin/sh"))
	wrapper, err := files.ReadFile("files/proxy/iptables-wrapper")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/iptables-wrapper"), wrapper, 0o755); err != nil {
		return err
	}
	for _, c := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		_ = os.Symlink("iptables-wrapper", filepath.Join(root, "usr/sbin", c))
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY root/ /\nENV PATH=%s\nENTRYPOINT [\"/usr/local/bin/kube-proxy\"]\n", scratchPath)
	return b.docker.Build(ctx, dir, dockerfile, b.kubeProxyRef())
}

var libPath = regexp.MustCompile(`(/[^ ]+\.so[^ ]*)`)

// sharedLibs lists the libraries a binary of the root file system links, via the rootfs's ldd.
func sharedLibs(ctx context.Context, rootfs, file string) ([]string, error) {
	out, err := output(ctx, nil, nil, "chroot", rootfs, "ldd", file)
	if err != nil {
		// Static binaries make ldd exit non-zero ("not a dynamic executable").
		if strings.Contains(err.Error(), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("listing libraries of %s: %w", file, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := libPath.FindString(line); m != "" {
			libs = append(libs, m)
		}
	}
	return libs, nil
}

// copyResolved copies rootfs-relative path p (following symlinks, as the dynamic loader
// would) to the same path under dst.
func copyResolved(rootfs, p, dst string, mode os.FileMode) error {
	src := filepath.Join(rootfs, p)
	for i := 0; i < 16; i++ {
		target, err := os.Readlink(src)
		if err != nil {
			break
		}
		if filepath.IsAbs(target) {
			src = filepath.Join(rootfs, target)
		} else {
			src = filepath.Join(filepath.Dir(src), target)
		}
	}
	// usr-merged Debian: /lib -> usr/lib. Resolve directory links in the path, too.
	if resolved, err := filepath.EvalSymlinks(src); err == nil && strings.HasPrefix(resolved, rootfs) {
		src = resolved
	}
	return copyFile(src, filepath.Join(dst, p), mode)
}

// importIntoRootfs imports an image archive into the root file system's containerd store
// (namespace k8s.io, where the CRI looks) with a private containerd whose root is that
// store, so the node starts with every control-plane image present.
func (b *builder) importIntoRootfs(ctx context.Context, archive string) error {
	tmp, err := os.MkdirTemp("", "sandbox-containerd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(b.work, "var/lib/containerd"), filepath.Join(tmp, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(tmp, "config.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(tmp, "containerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(tmp, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting a private containerd: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(tmp, "containerd.log"))
			return fmt.Errorf("private containerd did not start: %s", lastLines(string(log), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// --no-unpack keeps only the content (the node's snapshotter unpacks on first use);
	// pinned so the kubelet's image GC never removes them. No --digests: it would add
	// "import-<date>@sha256" names next to the real ones.
	if err := run(ctx, nil, nil, "ctr", "--address", sock, "-n", "k8s.io", "images", "import",
		"--label=io.cri-containerd.pinned=pinned", "--all-platforms", "--no-unpack", archive); err != nil {
		return fmt.Errorf("preloading images: %w", err)
	}
	return nil
}

// assemble turns the root file system into an image with the metadata kind's nodes need.
func (b *builder) assemble(ctx context.Context) error {
	rootfsImage := b.image + "-rootfs"
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "-C", b.work, "-c", ".")
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := tarCmd.Start(); err != nil {
		return err
	}
	_, importErr := output(ctx, nil, pipe, "docker", "import", "-", rootfsImage)
	tarErr := tarCmd.Wait()
	if importErr != nil {
		return fmt.Errorf("importing the root file system: %w", importErr)
	}
	if tarErr != nil {
		return fmt.Errorf("archiving the root file system: %w", tarErr)
	}
	// `docker import --change` rejects STOPSIGNAL, so the metadata comes from a build.
	dir := filepath.Join(b.opts.CacheDir, "work", "meta")
	dockerfile := fmt.Sprintf("FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT [\"/usr/local/bin/entrypoint\", \"/sbin/init\"]\n", rootfsImage)
	if err := b.docker.Build(ctx, dir, dockerfile, b.image); err != nil {
		return err
	}
	_ = run(ctx, nil, nil, "docker", "rmi", rootfsImage)
	// The work tree is a ~1 GB copy; the cached rootfs and binaries stay.
	_ = os.RemoveAll(filepath.Join(b.opts.CacheDir, "work"))
	return nil
}
