package mocker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Reconciler keeps the selected nodes' GPU labels and capacity in place.
type Reconciler struct {
	Client   client.Client
	Config   Config
	Recorder events.EventRecorder
	// Resync re-checks every node this often even without events: the kubelet can rewrite
	// node status without the change being one the controller sees as new (e.g. after a
	// node object is recreated).
	Resync time.Duration
}

// Reconcile is level-triggered and idempotent: it compares the node with the desired state
// and patches only what differs.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var n corev1.Node
	if err := r.Client.Get(ctx, req.NamespacedName, &n); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !n.DeletionTimestamp.IsZero() || !r.Config.Selects(&n) {
		return ctrl.Result{}, nil
	}
	if missing := r.Config.MissingLabels(&n); missing != nil {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": missing}})
		if err := r.Client.Patch(ctx, &n, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return ctrl.Result{}, fmt.Errorf("labelling node %s: %w", n.Name, err)
		}
		logger.Info("set fake GPU labels", "node", n.Name, "labels", missing)
		r.event(&n, "FakeGPULabels", "Set fake GPU labels %v", missing)
	}
	if !r.Config.CapacityCurrent(&n) {
		q := r.Config.Quantity()
		patch, _ := json.Marshal(map[string]any{"status": map[string]any{
			"capacity":    map[string]string{string(GPUResource): q.String()},
			"allocatable": map[string]string{string(GPUResource): q.String()},
		}})
		if err := r.Client.Status().Patch(ctx, &n, client.RawPatch(types.MergePatchType, patch)); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, fmt.Errorf("advertising GPUs on node %s: %w", n.Name, err)
		}
		logger.Info("advertised fake GPUs", "node", n.Name, "gpus", q.String())
		r.event(&n, "FakeGPUCapacity", "Advertised %s %s", q.String(), GPUResource)
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

func (r *Reconciler) event(n *corev1.Node, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(n, nil, corev1.EventTypeNormal, reason, "Mock", format, args...)
	}
}

// SetupWithManager registers the reconciler for Nodes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("gpu-mocker").
		For(&corev1.Node{}).
		Complete(r)
}
