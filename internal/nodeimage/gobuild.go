package nodeimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/versions"
)

// Kubernetes' staging modules: k8s.io/kubernetes requires them at v0.0.0 with replace
// directives pointing into its own tree, which a consumer module must restate with the
// matching v0.x.y release of each.
var stagingModules = []string{
	"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
	"cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
	"controller-manager", "cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
	"endpointslice", "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy",
	"kube-scheduler", "kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission",
	"sample-apiserver", "sample-cli-plugin", "sample-controller",
}

// kubernetesCommands are the binaries the node and its control-plane images need.
var kubernetesCommands = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubeadm", "kubectl",
}

// wrapperModule is a throw-away Go module that exists only to build another module's
// commands with the right versions (the upstream modules cannot be `go install`ed because
// of their replace directives).
type wrapperModule struct {
	name     string
	requires []string          // module@version
	replaces map[string]string // module => module@version
	imports  []string          // packages imported by tools.go so `go mod tidy` keeps them
	files    map[string]string // extra source files
}

func (w wrapperModule) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var gomod strings.Builder
	fmt.Fprintf(&gomod, "module %s\n\ngo 1.26.0\n\n", w.name)
	for _, r := range w.requires {
		mod, ver, _ := strings.Cut(r, "@")
		fmt.Fprintf(&gomod, "require %s %s\n", mod, ver)
	}
	for from, to := range w.replaces {
		mod, ver, _ := strings.Cut(to, "@")
		fmt.Fprintf(&gomod, "replace %s => %s %s\n", from, mod, ver)
	}
	out := map[string]string{"go.mod": gomod.String()}
	if len(w.imports) > 0 {
		var tools strings.Builder
		tools.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
		for _, imp := range w.imports {
			fmt.Fprintf(&tools, "\t_ %q\n", imp)
		}
		tools.WriteString(")\n")
		out["tools.go"] = tools.String()
	}
	for name, content := range w.files {
		out[name] = content
	}
	for name, content := range out {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// Rewrite only on change so `go` sees a stable module between runs.
		if old, err := os.ReadFile(p); err == nil && string(old) == content {
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goBuild runs `go mod tidy` then `go build` in a wrapper module, statically linked:
// the control-plane images are FROM scratch.
func (b *builder) goBuild(ctx context.Context, w wrapperModule, ldflags string, outDir string, pkgs ...string) error {
	dir := b.srcDir(w.name)
	if err := w.write(dir); err != nil {
		return fmt.Errorf("writing wrapper module %s: %w", w.name, err)
	}
	env := []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off"}
	if err := run(ctx, b.opts.Status, env, "go", "-C", dir, "mod", "tidy"); err != nil {
		return fmt.Errorf("resolving modules for %s: %w", w.name, err)
	}
	args := []string{"-C", dir, "build", "-trimpath", "-ldflags", "-s -w " + ldflags, "-o", outDir + "/"}
	if err := run(ctx, b.opts.Status, env, "go", append(args, pkgs...)...); err != nil {
		return fmt.Errorf("compiling %s: %w", strings.Join(pkgs, " "), err)
	}
	return nil
}

func (b *builder) buildKubernetes(ctx context.Context) error {
	out := b.binDir()
	if allExist(out, kubernetesCommands...) {
		return nil
	}
	v := b.opts.KubernetesVersion
	staging := "v0" + strings.TrimPrefix(v, "v1") // v1.34.4 -> v0.34.4
	w := wrapperModule{
		name:     "kubernetes-build",
		requires: []string{"k8s.io/kubernetes@" + v},
		replaces: map[string]string{},
	}
	for _, m := range stagingModules {
		w.replaces["k8s.io/"+m] = "k8s.io/" + m + "@" + staging
	}
	var pkgs []string
	for _, c := range kubernetesCommands {
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+c)
	}
	w.imports = pkgs
	// kubeadm and kind read these to decide how to behave; an unset version breaks both.
	major, minor := "1", strings.Split(strings.TrimPrefix(v, "v"), ".")[1]
	var ld []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld,
			"-X "+p+".gitVersion="+v, "-X "+p+".gitMajor="+major, "-X "+p+".gitMinor="+minor,
			"-X "+p+".gitTreeState=clean", "-X "+p+".gitCommit=0000000000000000000000000000000000000000",
			"-X "+p+".buildDate=2026-01-01T00:00:00Z")
	}
	return b.goBuild(ctx, w, strings.Join(ld, " "), out, pkgs...)
}

func (b *builder) buildAddons(ctx context.Context) error {
	out := b.binDir()
	if !allExist(out, "etcd") {
		w := wrapperModule{
			name:     "etcd-build",
			requires: []string{"go.etcd.io/etcd/server/v3@v" + versions.Etcd},
			files: map[string]string{"main.go": `package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`},
		}
		if err := b.goBuild(ctx, w, "", out, "."); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(out, "etcd-build"), filepath.Join(out, "etcd")); err != nil {
			return err
		}
	}
	if !allExist(out, "coredns") {
		// Only the plugins of kubeadm's default Corefile (plus log): importing CoreDNS'
		// full plugin list would pull in every cloud SDK.
		var imports strings.Builder
		for _, p := range []string{"cache", "errors", "forward", "health", "kubernetes", "loadbalance", "log", "loop", "metrics", "ready", "reload"} {
			fmt.Fprintf(&imports, "\t_ \"github.com/coredns/coredns/plugin/%s\"\n", p)
		}
		w := wrapperModule{
			name:     "coredns-build",
			requires: []string{"github.com/coredns/coredns@" + versions.CoreDNS},
			files: map[string]string{"main.go": "package main\n\nimport (\n\t\"github.com/coredns/coredns/coremain\"\n\n" +
				imports.String() + ")\n\nfunc main() { coremain.Run() }\n"},
		}
		if err := b.goBuild(ctx, w, "", out, "."); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(out, "coredns-build"), filepath.Join(out, "coredns")); err != nil {
			return err
		}
	}
	if !allExist(out, "crictl") {
		w := wrapperModule{
			name:     "crictl-build",
			requires: []string{"sigs.k8s.io/cri-tools@" + versions.Crictl},
			imports:  []string{"sigs.k8s.io/cri-tools/cmd/crictl"},
		}
		if err := b.goBuild(ctx, w, "-X sigs.k8s.io/cri-tools/pkg/version.Version="+versions.Crictl, out, "sigs.k8s.io/cri-tools/cmd/crictl"); err != nil {
			return err
		}
	}
	if !allExist(out, "pause") {
		src, err := files.ReadFile("files/pause/main.go.txt")
		if err != nil {
			return err
		}
		w := wrapperModule{name: "pause", files: map[string]string{"main.go": string(src)}}
		if err := b.goBuild(ctx, w, "", out, "."); err != nil {
			return err
		}
	}
	return nil
}

func allExist(dir string, names ...string) bool {
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Size() == 0 {
			return false
		}
	}
	return true
}
