package kube

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

func TestDeploymentReady(t *testing.T) {
	for _, tc := range []struct {
		name                                     string
		gen, observed                            int64
		replicas, updated, available, statusReps int32
		want                                     bool
	}{
		{"fresh and available", 1, 1, 1, 1, 1, 1, true},
		{"not observed yet", 2, 1, 1, 1, 1, 1, false},
		{"new pod created, old one still serving", 2, 2, 1, 1, 1, 2, false},
		{"new pod available, old one not yet removed", 2, 2, 1, 1, 2, 2, false},
		{"rollout done", 2, 2, 1, 1, 1, 1, true},
		{"scaled to zero", 3, 3, 0, 0, 0, 0, true},
	} {
		d := &appsv1.Deployment{}
		d.Generation = tc.gen
		d.Spec.Replicas = ptr.To(tc.replicas)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: tc.observed, Replicas: tc.statusReps,
			UpdatedReplicas: tc.updated, AvailableReplicas: tc.available}
		if got, why := DeploymentReady(d); got != tc.want {
			t.Errorf("%s: ready=%v (%s), want %v", tc.name, got, why, tc.want)
		}
	}
}
