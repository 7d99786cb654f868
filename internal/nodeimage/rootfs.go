package nodeimage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/versions"
)

// debianPackages are what kind's base image installs, minus what an overlayfs/ext4 host
// does not need (fuse-overlayfs, nfs-common, open-iscsi), plus containerd, runc and the CNI
// plugins, which kind builds from source and we take from Debian.
var debianPackages = []string{
	"systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
	"conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount", "kmod",
	"libseccomp2", "pigz", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps", "socat",
}

// hostDebianMirror returns the Debian archive the host's apt uses, so that the build goes
// through whatever mirror (or proxy) this machine is set up for.
func hostDebianMirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if u, ok := strings.CutPrefix(line, "URIs:"); ok {
				for _, uri := range strings.Fields(u) {
					if isDebianArchive(uri) {
						fh.Close()
						return uri
					}
				}
			}
			if fields := strings.Fields(line); len(fields) >= 3 && fields[0] == "deb" {
				for _, f := range fields[1:] {
					if strings.Contains(f, "://") && isDebianArchive(f) {
						fh.Close()
						return f
					}
				}
			}
		}
		fh.Close()
	}
	return DefaultMirror
}

// isDebianArchive accepts Debian's main archive (or a mirror of it), not its security
// archive and not another distribution's (an Ubuntu host's mirror has no bookworm).
func isDebianArchive(uri string) bool {
	return strings.Contains(uri, "debian") && !strings.Contains(uri, "security")
}

func (b *builder) rootfsDir() string {
	h := sha256.Sum256([]byte(strings.Join(debianPackages, ",")))
	return filepath.Join(b.opts.CacheDir, "rootfs", versions.DebianSuite+"-"+hex.EncodeToString(h[:])[:10])
}

// buildRootfs debootstraps Debian once; later builds copy the cached tree.
func (b *builder) buildRootfs(ctx context.Context) error {
	dir := b.rootfsDir()
	if _, err := os.Stat(dir + ".complete"); err == nil {
		return nil
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	err := run(ctx, b.opts.Status, nil, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(debianPackages, ","), versions.DebianSuite, dir, b.opts.Mirror)
	if err != nil {
		return fmt.Errorf("debootstrap from %s: %w", b.opts.Mirror, err)
	}
	// The apt caches are hundreds of MB the node never uses.
	_ = os.RemoveAll(filepath.Join(dir, "var/cache/apt/archives"))
	_ = os.MkdirAll(filepath.Join(dir, "var/cache/apt/archives/partial"), 0o755)
	_ = os.RemoveAll(filepath.Join(dir, "var/lib/apt/lists"))
	return os.WriteFile(dir+".complete", nil, 0o644)
}

// kindBaseFiles locates kind's node base files in the module cache: they are part of the
// kind module this tool links, so the node layout follows the library's expectations.
func kindBaseFiles(ctx context.Context) (string, error) {
	out, err := output(ctx, []string{"GOFLAGS=-mod=mod"}, nil, "go", "mod", "download", "-json", "sigs.k8s.io/kind@"+versions.Kind)
	if err != nil {
		return "", fmt.Errorf("downloading sigs.k8s.io/kind@%s: %w", versions.Kind, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("locating sigs.k8s.io/kind@%s in the module cache: %v %s", versions.Kind, err, m.Error)
	}
	return filepath.Join(m.Dir, "images", "base", "files"), nil
}

// kindFilesSkipped are kind base files the sandbox replaces or does not use.
var kindFilesSkipped = map[string]bool{
	"etc/containerd/config.toml":                           true, // ours: containerd 1.6, no fuse-overlayfs proxy
	"etc/systemd/system/containerd-fuse-overlayfs.service": true,
	"LICENSES/README.txt":                                  true,
}

func (b *builder) layout(ctx context.Context) error {
	b.work = filepath.Join(b.opts.CacheDir, "work", "rootfs")
	_ = os.RemoveAll(b.work)
	if err := os.MkdirAll(filepath.Dir(b.work), 0o755); err != nil {
		return err
	}
	if err := run(ctx, nil, nil, "cp", "-a", b.rootfsDir(), b.work); err != nil {
		return err
	}
	R := b.work

	kindFiles, err := kindBaseFiles(ctx)
	if err != nil {
		return err
	}
	// Module cache files are read-only and lose their exec bits; restore modes as kind's
	// Dockerfile does (COPY --chmod).
	if err := copyTree(os.DirFS(kindFiles), ".", R, func(p string) (bool, os.FileMode) {
		if kindFilesSkipped[p] {
			return false, 0
		}
		if strings.HasPrefix(p, "usr/local/bin/") || strings.HasPrefix(p, "kind/bin/") {
			return true, 0o755
		}
		return true, 0o644
	}); err != nil {
		return fmt.Errorf("copying kind's base files: %w", err)
	}
	// Debian installs containerd in /usr/bin; kind's unit expects kind's own build in /usr/local/bin.
	unit := filepath.Join(R, "etc/systemd/system/containerd.service")
	if err := replaceInFile(unit, "ExecStart=/usr/local/bin/containerd", "ExecStart=/usr/bin/containerd"); err != nil {
		return err
	}
	sub, _ := fs.Sub(files, "files")
	if err := copyTree(sub, ".", R, func(p string) (bool, os.FileMode) {
		if strings.HasPrefix(p, "proxy/") || strings.HasPrefix(p, "pause/") {
			return false, 0
		}
		if strings.HasSuffix(p, ".sh") {
			return true, 0o755
		}
		return true, 0o644
	}); err != nil {
		return fmt.Errorf("copying the sandbox's node files: %w", err)
	}

	bin := b.binDir()
	for _, c := range []struct{ name, dest string }{
		{"kubelet", "usr/bin"}, {"kubeadm", "usr/bin"}, {"kubectl", "usr/bin"}, {"crictl", "usr/local/bin"},
	} {
		if err := copyFile(filepath.Join(bin, c.name), filepath.Join(R, c.dest, c.name), 0o755); err != nil {
			return err
		}
	}
	// kind reads the node's Kubernetes version from this one line.
	if err := os.WriteFile(filepath.Join(R, "kind/version"), []byte(b.opts.KubernetesVersion), 0o644); err != nil {
		return err
	}
	// CNI plugins from Debian, where containerd's CRI config looks for them.
	if err := os.MkdirAll(filepath.Join(R, "opt/cni/bin"), 0o755); err != nil {
		return err
	}
	plugins, _ := os.ReadDir(filepath.Join(R, "usr/lib/cni"))
	for _, p := range plugins {
		link := filepath.Join(R, "opt/cni/bin", p.Name())
		_ = os.Remove(link)
		if err := os.Symlink("/usr/lib/cni/"+p.Name(), link); err != nil {
			return err
		}
	}
	// systemd trimmed as in kind's base image: a node container boots only what it needs.
	for _, pattern := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(R, pattern))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
	if err := appendLineOnce(filepath.Join(R, "etc/systemd/journald.conf"), "ReadKMsg=no"); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(R, "sbin/init")); err != nil {
		if err := os.Symlink("/lib/systemd/systemd", filepath.Join(R, "sbin/init")); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(R, "etc/kubernetes/manifests"), 0o755); err != nil {
		return err
	}
	if err := b.writeCRIBaseSpec(ctx); err != nil {
		return err
	}
	if err := run(ctx, nil, nil, "chroot", R, "systemctl", "enable",
		"kubelet.service", "containerd.service", "undo-mount-hacks.service", "podnet.service"); err != nil {
		return err
	}
	if err := run(ctx, nil, nil, "chroot", R, "systemctl", "mask", "systemd-binfmt.service"); err != nil {
		return err
	}
	// Docker provides these when a node starts.
	for _, f := range []string{"etc/resolv.conf", "etc/machine-id"} {
		_ = os.Remove(filepath.Join(R, f))
		if err := os.WriteFile(filepath.Join(R, f), nil, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeCRIBaseSpec derives containerd's base OCI spec as kind does: containerd's default
// spec plus kind's createContainer hook (it mounts the product_uuid per node), without
// rlimits so containers inherit the node's.
func (b *builder) writeCRIBaseSpec(ctx context.Context) error {
	out, err := output(ctx, nil, nil, "chroot", b.work, "ctr", "oci", "spec")
	if err != nil {
		return fmt.Errorf("reading containerd's default OCI spec: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		return fmt.Errorf("parsing containerd's default OCI spec: %w", err)
	}
	if p, ok := spec["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	hooks, _ := spec["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	cc, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(cc, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	spec["hooks"] = hooks
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.work, "etc/containerd/cri-base.json"), data, 0o644)
}

// copyTree copies every regular file of src (an fs.FS) under root into dst; keep decides
// per slash-separated relative path whether to copy and with which mode.
func copyTree(src fs.FS, root, dst string, keep func(string) (bool, os.FileMode)) error {
	return fs.WalkDir(src, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(path.Clean(p), "./")
		ok, mode := keep(rel)
		if !ok {
			return nil
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		_ = os.Remove(target)
		return os.WriteFile(target, data, mode)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	return os.WriteFile(dst, data, mode)
}

func replaceInFile(p, old, new string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(strings.ReplaceAll(string(data), old, new)), 0o644)
}

func appendLineOnce(p, line string) error {
	data, _ := os.ReadFile(p)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == line {
			return nil
		}
	}
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		data = append(data, '\n')
	}
	return os.WriteFile(p, append(data, []byte(line+"\n")...), 0o644)
}
