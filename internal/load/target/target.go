// Package target finds what `sandbox load` and `sandbox chat` talk to: the sandbox's gateway on
// 127.0.0.1, the namespace's API key and a deployed model, the way `sandbox endpoint`, `sandbox
// key` and `sandbox model list` find them; flags override each part.
package target

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/inference-sandbox/sandbox/internal/cluster"
	"github.com/inference-sandbox/sandbox/internal/kube"
	"github.com/inference-sandbox/sandbox/internal/load"
	"github.com/inference-sandbox/sandbox/internal/models"
	"github.com/inference-sandbox/sandbox/internal/progress"
)

// Request names the sandbox and the overrides given on the command line.
type Request struct {
	Sandbox    string
	Kubeconfig string
	Namespace  string
	// URL, APIKey, Model override the sandbox's own; with all three no cluster is needed.
	URL, APIKey, Model string
}

// Target is where requests go.
type Target struct {
	URL, APIKey, Model, Namespace string
	// Client is the sandbox's cluster, nil when the overrides made it unnecessary or it is
	// unreachable; without it there are no per-pod shares or pod names.
	Client *kube.Client
	// Own is true when URL is the sandbox's own gateway.
	Own bool
}

// Resolve fills in what the request leaves out from the sandbox.
func Resolve(ctx context.Context, r Request) (*Target, error) {
	if r.Namespace == "" {
		r.Namespace = models.DefaultNamespace
	}
	t := &Target{URL: r.URL, APIKey: r.APIKey, Model: r.Model, Namespace: r.Namespace}
	if t.URL != "" {
		if err := load.CheckTarget(t.URL, nil); err != nil {
			return nil, err
		}
	}
	c, cerr := kube.New(r.Kubeconfig)
	if cerr != nil {
		cerr = fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`)", r.Sandbox, cerr)
	} else {
		t.Client = c
	}
	if t.URL != "" && t.Client != nil && r.Namespace == models.DefaultNamespace {
		// --url may name the sandbox's own gateway (`--url $(sandbox endpoint)`): then the pods'
		// counters still describe this traffic.
		if port, err := cluster.New(progress.Discard()).GatewayPort(ctx, r.Sandbox); err == nil {
			t.Own = strings.TrimRight(t.URL, "/") == fmt.Sprintf("http://127.0.0.1:%d", port)
		}
	}
	if t.URL == "" {
		if r.Namespace != models.DefaultNamespace {
			return nil, fmt.Errorf("only the gateway of namespace %s is published on 127.0.0.1; for %s give --url (a loopback port-forward)", models.DefaultNamespace, r.Namespace)
		}
		if err := cluster.Preflight(ctx); err != nil {
			return nil, err
		}
		port, err := cluster.New(progress.Discard()).GatewayPort(ctx, r.Sandbox)
		if err != nil {
			return nil, fmt.Errorf("sandbox %q: %w (is it up? run `sandbox up`, or give --url)", r.Sandbox, err)
		}
		t.URL, t.Own = fmt.Sprintf("http://127.0.0.1:%d", port), true
	}
	if t.APIKey == "" {
		if t.Client == nil {
			return nil, fmt.Errorf("no API key: %w; give --api-key", cerr)
		}
		k, err := models.APIKey(ctx, t.Client, r.Namespace)
		if err != nil {
			return nil, err
		}
		t.APIKey = k
	}
	if t.Model == "" {
		if t.Client == nil {
			return nil, fmt.Errorf("no model: %w; give --model", cerr)
		}
		m, err := firstModel(ctx, t.Client, r.Namespace)
		if err != nil {
			return nil, err
		}
		t.Model = m
	}
	return t, nil
}

// firstModel is the first ready model of the namespace, else the first deployed one.
func firstModel(ctx context.Context, c *kube.Client, namespace string) (string, error) {
	ms, err := models.List(ctx, c, models.ListOptions{Namespace: namespace})
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", errors.New("no model is deployed: run `sandbox model deploy <name>` or give --model")
	}
	for _, m := range ms {
		if m.Ready {
			return m.Name, nil
		}
	}
	return ms[0].Name, nil
}
