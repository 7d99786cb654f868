package scaler

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels and conditions of KAITO's InferenceSet (facts §1.3, §1.4).
const (
	LabelCreatedBy     = "inferenceset.kaito.sh/created-by"
	ConditionReady     = "InferenceSetReady"
	DefaultMetricsPort = 5000
)

// ClusterSource answers from a controller-runtime client, normally the manager's cache.
type ClusterSource struct {
	Client client.Reader
	// MetricsPort is where model pods serve /metrics (5000, as KAITO's inference container).
	MetricsPort int
}

// Ready implements Source.
func (c *ClusterSource) Ready(ctx context.Context, set types.NamespacedName) (bool, error) {
	is := &unstructured.Unstructured{}
	is.SetGroupVersionKind(InferenceSetGVK)
	if err := c.Client.Get(ctx, set, is); err != nil {
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("%s: %w", set, ErrNotFound)
		}
		return false, err
	}
	return conditionTrue(is, ConditionReady), nil
}

// Endpoints implements Source. Pods count once they run and have an address, ready or not:
// upstream scrapes through Services that publish not-ready addresses, so a replica still
// warming up already reports its queue.
func (c *ClusterSource) Endpoints(ctx context.Context, set types.NamespacedName) ([]Endpoint, error) {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(set.Namespace), client.MatchingLabels{LabelCreatedBy: set.Name}); err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", set, err)
	}
	var out []Endpoint
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, Endpoint{
			Pod: p.Name,
			URL: "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(c.MetricsPort)) + "/metrics",
		})
	}
	return out, nil
}

func conditionTrue(obj *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == condType {
			return m["status"] == "True"
		}
	}
	return false
}
