// Package cluster owns the kind cluster's lifecycle through the kind Go library: create or
// reuse, kubeconfig in the sandbox's state directory, image loading, clean deletion.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	kindexec "sigs.k8s.io/kind/pkg/exec"

	"github.com/inference-sandbox/sandbox/internal/progress"
)

// GatewayNodePort is the NodePort every sandbox's gateway Service uses; the control-plane
// node publishes it on 127.0.0.1.
const GatewayNodePort = 30080

// WorkerLabel marks the nodes the GPU mocker turns into fake GPU nodes.
const WorkerLabel = "sandbox.inference.dev/gpu-node"

// Spec is the cluster a sandbox wants.
type Spec struct {
	Name      string
	Workers   int
	NodeImage string
	// GatewayPort is the host port on 127.0.0.1 for the gateway; 0 picks 30080 if free, else any.
	GatewayPort int
	// Kubeconfig is the file the cluster's kubeconfig is written to.
	Kubeconfig string
	// Retain keeps the node containers when creation fails, to debug them.
	Retain bool
}

// Manager drives kind. It never edits ~/.kube/config.
type Manager struct {
	provider *kindcluster.Provider
	status   *progress.Status
}

// New returns a Manager using Docker, as the offline node image is a Docker image.
func New(status *progress.Status) *Manager {
	return &Manager{
		provider: kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(newKindLogger(status))),
		status:   status,
	}
}

// ErrNoEngine is returned when no container engine answers.
var ErrNoEngine = errors.New("no container engine")

// Preflight checks that a Docker engine answers, with one line saying what to do if not.
func Preflight(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("%w: the docker command is not installed; install Docker (on Debian/Ubuntu: sudo hack/setup-docker.sh, or apt-get install docker.io)", ErrNoEngine)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		msg := strings.TrimSpace(string(out))
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		return fmt.Errorf("%w: the Docker engine does not answer (%s); start it (sudo hack/setup-docker.sh sets it up and starts it)", ErrNoEngine, msg)
	}
	return nil
}

// Exists reports whether kind knows a cluster of that name.
func (m *Manager) Exists(name string) (bool, error) {
	names, err := m.provider.List()
	if err != nil {
		return false, explain(err, "listing kind clusters")
	}
	return slices.Contains(names, name), nil
}

// List returns every kind cluster on this machine.
func (m *Manager) List() ([]string, error) {
	names, err := m.provider.List()
	return names, explain(err, "listing kind clusters")
}

// KindConfig renders the kind configuration for a spec; exported for tests.
func KindConfig(spec Spec, gatewayHostPort int) *v1alpha4.Cluster {
	cfg := &v1alpha4.Cluster{
		Networking: v1alpha4.Networking{APIServerAddress: "127.0.0.1"},
		Nodes: []v1alpha4.Node{{
			Role: v1alpha4.ControlPlaneRole,
			ExtraPortMappings: []v1alpha4.PortMapping{{
				ContainerPort: GatewayNodePort,
				HostPort:      int32(gatewayHostPort),
				ListenAddress: "127.0.0.1",
				Protocol:      v1alpha4.PortMappingProtocolTCP,
			}},
		}},
	}
	for i := 0; i < spec.Workers; i++ {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{
			Role:   v1alpha4.WorkerRole,
			Labels: map[string]string{WorkerLabel: "true"},
		})
	}
	return cfg
}

// Ensure creates the cluster, or reuses (and restarts) an existing one, and writes its
// kubeconfig. It returns true when the cluster was created by this call.
func (m *Manager) Ensure(ctx context.Context, spec Spec) (bool, error) {
	exists, err := m.Exists(spec.Name)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(spec.Kubeconfig), 0o700); err != nil {
		return false, fmt.Errorf("creating the state directory: %w", err)
	}
	if exists {
		if err := m.startStoppedNodes(ctx, spec.Name); err != nil {
			return false, err
		}
		return false, m.WriteKubeconfig(spec.Name, spec.Kubeconfig)
	}
	port := spec.GatewayPort
	if port == 0 {
		port = freePort(GatewayNodePort)
	}
	create := func(retain bool) error {
		err := m.provider.Create(spec.Name,
			kindcluster.CreateWithV1Alpha4Config(KindConfig(spec, port)),
			kindcluster.CreateWithNodeImage(spec.NodeImage),
			kindcluster.CreateWithKubeconfigPath(spec.Kubeconfig),
			kindcluster.CreateWithWaitForReady(3*time.Minute),
			kindcluster.CreateWithDisplayUsage(false),
			kindcluster.CreateWithDisplaySalutation(false),
			kindcluster.CreateWithRetain(retain),
		)
		return explain(err, fmt.Sprintf("creating kind cluster %q", spec.Name))
	}
	// Bringing up kubeadm on a loaded two-core machine occasionally misses a deadline. The
	// first failure keeps its nodes long enough to save their logs, then one retry runs.
	if err := create(true); err != nil {
		logs := filepath.Join(filepath.Dir(spec.Kubeconfig), "logs", time.Now().Format("20060102-150405"))
		if cerr := m.provider.CollectLogs(spec.Name, logs); cerr == nil {
			m.status.Warnf("cluster creation failed; node logs saved in %s", logs)
		}
		if spec.Retain {
			return false, err
		}
		if derr := m.provider.Delete(spec.Name, spec.Kubeconfig); derr != nil {
			return false, fmt.Errorf("%w (and removing the failed nodes: %v)", err, derr)
		}
		m.status.Warnf("retrying once: %v", firstLine(err.Error()))
		if err := create(false); err != nil {
			return false, err
		}
	}
	// kind merges into the file; keep it private (it holds cluster-admin credentials).
	_ = os.Chmod(spec.Kubeconfig, 0o600)
	return true, nil
}

// WriteKubeconfig (re)writes the host-reachable kubeconfig of a cluster.
func (m *Manager) WriteKubeconfig(name, path string) error {
	cfg, err := m.provider.KubeConfig(name, false)
	if err != nil {
		return explain(err, "reading the cluster's kubeconfig")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startStoppedNodes restarts node containers that are not running (after a reboot or a
// Docker restart), so `up` repairs instead of failing.
func (m *Manager) startStoppedNodes(ctx context.Context, name string) error {
	nodes, err := m.provider.ListNodes(name)
	if err != nil {
		return explain(err, "listing nodes")
	}
	for _, n := range nodes {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Running}}", n.String()).Output()
		if err != nil {
			return fmt.Errorf("inspecting node %s: %w", n, err)
		}
		if strings.TrimSpace(string(out)) == "true" {
			continue
		}
		m.status.Infof("starting stopped node %s", n)
		if out, err := exec.CommandContext(ctx, "docker", "start", n.String()).CombinedOutput(); err != nil {
			return fmt.Errorf("starting node %s: %v: %s", n, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Delete removes the cluster's nodes and the kubeconfig file, and the kind network when no
// other kind cluster uses it any more. Deleting a missing cluster is not an error.
func (m *Manager) Delete(ctx context.Context, name, kubeconfig string) error {
	exists, err := m.Exists(name)
	if err != nil {
		return err
	}
	if exists {
		if err := m.provider.Delete(name, kubeconfig); err != nil {
			return explain(err, fmt.Sprintf("deleting kind cluster %q", name))
		}
	}
	if err := os.Remove(kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", kubeconfig, err)
	}
	return m.removeNetworkIfUnused(ctx)
}

// kindNetwork is the Docker network kind puts every cluster on.
const kindNetwork = "kind"

func (m *Manager) removeNetworkIfUnused(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "docker", "network", "inspect", "-f", "{{len .Containers}}", kindNetwork).CombinedOutput()
	if err != nil {
		return nil // no network: nothing to do
	}
	if strings.TrimSpace(string(out)) != "0" {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "docker", "network", "rm", kindNetwork).CombinedOutput(); err != nil {
		return fmt.Errorf("removing docker network %s: %v: %s", kindNetwork, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// GatewayPort returns the host port the control-plane publishes the gateway NodePort on.
func (m *Manager) GatewayPort(ctx context.Context, name string) (int, error) {
	node := name + "-control-plane"
	out, err := exec.CommandContext(ctx, "docker", "port", node, strconv.Itoa(GatewayNodePort)+"/tcp").Output()
	if err != nil {
		return 0, fmt.Errorf("finding the gateway port of %s: %w", node, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if _, p, err := net.SplitHostPort(strings.TrimSpace(line)); err == nil {
			return strconv.Atoi(p)
		}
	}
	return 0, fmt.Errorf("node %s publishes no port for %d", node, GatewayNodePort)
}

// NodeNames lists the node containers of a cluster.
func (m *Manager) NodeNames(name string) ([]string, error) {
	nodes, err := m.provider.ListNodes(name)
	if err != nil {
		return nil, explain(err, "listing nodes")
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.String())
	}
	slices.Sort(names)
	return names, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// freePort returns preferred if it can be bound on 127.0.0.1, else a free port.
func freePort(preferred int) int {
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", preferred)); err == nil {
		l.Close()
		return preferred
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return preferred
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// explain adds the output of a failed command (kind hides it in RunError) to the error.
func explain(err error, what string) error {
	if err == nil {
		return nil
	}
	if re := kindexec.RunErrorForError(err); re != nil && len(re.Output) > 0 {
		out := strings.TrimSpace(string(re.Output))
		if len(out) > 600 {
			out = "..." + out[len(out)-600:]
		}
		return fmt.Errorf("%s: %w: %s", what, err, out)
	}
	return fmt.Errorf("%s: %w", what, err)
}
