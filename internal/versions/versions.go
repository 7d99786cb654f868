// Package versions is the one table of every version the sandbox pins: the node image's
// Kubernetes and its control-plane pieces (Table), and the upstream profile's charts and images
// (Upstream, upstream.go). Change a version here and nowhere else.
package versions

// Sandbox is the version of this tool; overridden at link time with
// -ldflags "-X github.com/inference-sandbox/sandbox/internal/versions.Sandbox=...".
var Sandbox = "v0.0.0-dev"

// Pin is one pinned piece with where it comes from and when the pin was last checked.
type Pin struct {
	Name    string
	Version string
	Source  string
	Checked string // date the pin was last checked against its source (YYYY-MM-DD)
}

// Offline node image: Kubernetes v1.34.x is the newest minor that still runs on cgroup v1
// hosts (1.35+ refuses cgroup v1), see shared/facts/offline-kind.md §1.
const (
	Kubernetes = "v1.34.4"
	// Versions kubeadm v1.34.4 expects for its control-plane images (cmd/kubeadm constants).
	Etcd         = "3.6.5"
	EtcdImageTag = "3.6.5-0"
	CoreDNS      = "v1.12.1"
	Pause        = "3.10.1"
	Crictl       = "v1.34.0"
	// Kind is the kind Go library version in go.mod; the node image's layout follows it.
	Kind = "v0.33.0"
	// DebianSuite is the node image's root file system release.
	DebianSuite = "bookworm"
	// KEDA is built from github.com/kedacore/keda/v2 for the offline profile; v2.21.0 is the
	// newest release the module proxy serves.
	KEDA = "v2.21.0"
)

// Table lists every pin for `sandbox version -o json` and for humans reading this file: the
// offline profile's below, then the upstream profile's (Upstream, upstream.go).
var Table = append([]Pin{
	{"kubernetes", Kubernetes, "k8s.io/kubernetes (Go module proxy)", "2026-11-25"},
	{"etcd", Etcd, "go.etcd.io/etcd/server/v3 (Go module proxy)", "2026-11-25"},
	{"coredns", CoreDNS, "github.com/coredns/coredns (Go module proxy)", "2026-11-25"},
	{"crictl", Crictl, "sigs.k8s.io/cri-tools (Go module proxy)", "2026-11-25"},
	{"pause", Pause, "built from this repository", "2026-11-25"},
	{"kind", Kind, "sigs.k8s.io/kind (Go library)", "2026-11-25"},
	{"debian", DebianSuite, "Debian archive (debootstrap)", "2026-11-25"},
	{"keda", KEDA, "github.com/kedacore/keda/v2 (Go module proxy), built locally", "2026-11-25"},
}, upstreamPins()...)
