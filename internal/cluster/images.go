package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	"sigs.k8s.io/kind/pkg/errors"
)

// LoadImage copies a local Docker image into every node that does not have it yet, the way
// `kind load docker-image` does: one `docker save`, then a concurrent import per node.
// It returns the nodes it loaded the image into.
func (m *Manager) LoadImage(ctx context.Context, name, image string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", image).Output()
	if err != nil {
		return nil, fmt.Errorf("image %s is not present locally: %w", image, err)
	}
	id := strings.TrimSpace(string(out))
	all, err := m.provider.ListInternalNodes(name)
	if err != nil {
		return nil, explain(err, "listing nodes")
	}
	var missing []nodes.Node
	for _, n := range all {
		if got, err := nodeutils.ImageID(n, image); err == nil && got == id {
			continue
		}
		missing = append(missing, n)
	}
	if len(missing) == 0 {
		return nil, nil
	}
	tar, err := os.CreateTemp("", "sandbox-image-*.tar")
	if err != nil {
		return nil, err
	}
	tar.Close()
	defer os.Remove(tar.Name())
	if out, err := exec.CommandContext(ctx, "docker", "save", "-o", tar.Name(), image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("saving image %s: %v: %s", image, err, strings.TrimSpace(string(out)))
	}
	var fns []func() error
	var loaded []string
	for _, n := range missing {
		n := n
		loaded = append(loaded, n.String())
		fns = append(fns, func() error {
			f, err := os.Open(tar.Name())
			if err != nil {
				return err
			}
			defer f.Close()
			if err := nodeutils.LoadImageArchive(n, f); err != nil {
				return explain(err, fmt.Sprintf("loading %s into node %s", image, n))
			}
			return nil
		})
	}
	return loaded, errors.UntilErrorConcurrent(fns)
}
