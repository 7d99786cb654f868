// Package controller implements the control plane of the sandbox GatewayClass: every Gateway
// whose class names ControllerName gets its own data-plane Deployment and Service (running
// `stackd gateway --gateway <ns>/<name>`), and the Gateway, its class and the HTTPRoutes
// attached to it get their Gateway API status.
//
// RBAC it needs (manifests/offline/gateway.yaml renders it):
//   - gateway.networking.k8s.io gatewayclasses, gateways, httproutes: get, list, watch; their
//     /status: get, update, patch;
//   - inference.networking.k8s.io inferencepools, core services, pods, discovery endpointslices:
//     get, list, watch (route status, and to grant the data plane no more than it holds);
//   - apps deployments, core services and serviceaccounts, rbac rolebindings: get, list, watch,
//     create, update, patch, delete (the per-Gateway objects, garbage-collected via owner refs);
//   - rbac clusterroles: bind, on DataPlaneClusterRole only;
//   - events: create, patch; coordination leases in its own namespace for leader election.
package controller

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// ControllerName is the GatewayClass controllerName this controller serves.
	ControllerName = "inference-sandbox.dev/gateway-controller"
	// ClassName is the GatewayClass the sandbox installs.
	ClassName = "sandbox"
	// DataPlaneClusterRole is bound in each Gateway's namespace to the data plane's account.
	DataPlaneClusterRole = "sandbox-gateway-dataplane"
	// DefaultNodePort publishes the default Gateway on the host: the kind control-plane
	// container maps it to 127.0.0.1.
	DefaultNodePort = 30080

	// gatewayNameLabel is the label Istio stamps on a Gateway's pods; upstream network policies
	// and tests select gateway pods by it (upstream-production-stack §1.2).
	gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"
	managedByLabel   = "app.kubernetes.io/managed-by"
	managedBy        = "sandbox-gateway-controller"

	// httpPort and healthPort are the data plane's container ports; every HTTP listener's
	// Service port leads to httpPort, so listener ports below 1024 need no privilege.
	httpPort   = 8080
	healthPort = 8081
)

// Options are the settings every data plane gets.
type Options struct {
	// Image is the stackd image the data plane runs.
	Image string
	// AuthzAddress and BBRAddress are passed to every data plane (host:port of the gRPC servers).
	AuthzAddress string
	BBRAddress   string
	// NodePortGateway ("namespace/name") is published on DefaultNodePort; when it does not exist,
	// the oldest Gateway of the class is.
	NodePortGateway string
	// NodePort is the port the published Gateway gets; DefaultNodePort when zero.
	NodePort int32
}

// objectName names the objects made for gw, after Istio's "<gateway>-istio".
func objectName(gw *gatewayv1.Gateway) string { return gw.Name + "-sandbox" }

func labels(gw *gatewayv1.Gateway) map[string]string {
	return map[string]string{gatewayNameLabel: gw.Name, managedByLabel: managedBy}
}

func selector(gw *gatewayv1.Gateway) map[string]string {
	return map[string]string{gatewayNameLabel: gw.Name}
}

// dataPlaneArgs are the data plane's command line.
func dataPlaneArgs(gw *gatewayv1.Gateway, o Options) []string {
	args := []string{
		"gateway",
		"--gateway=" + gw.Namespace + "/" + gw.Name,
		"--port=" + strconv.Itoa(httpPort),
		"--health-port=" + strconv.Itoa(healthPort),
	}
	if o.AuthzAddress != "" {
		args = append(args, "--authz-address="+o.AuthzAddress)
	}
	if o.BBRAddress != "" {
		args = append(args, "--bbr-address="+o.BBRAddress)
	}
	return args
}

// setDeployment fills the fields of the data plane's Deployment this controller owns.
func setDeployment(d *appsv1.Deployment, gw *gatewayv1.Gateway, o Options) {
	d.Labels = mergeLabels(d.Labels, labels(gw))
	d.Spec.Replicas = ptr.To[int32](1)
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector(gw)}
	t := &d.Spec.Template
	t.Labels = mergeLabels(t.Labels, labels(gw))
	t.Spec.ServiceAccountName = objectName(gw)
	t.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	// Like the other system components, gateways prefer the control plane so that the fake GPU
	// nodes hold models only; preferred, not required, so any cluster can run them.
	t.Spec.Tolerations = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	t.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 100, Preference: corev1.NodeSelectorTerm{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.NodeSelectorOpExists}},
		}}},
	}}
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}},
			PeriodSeconds: period,
		}
	}
	c := corev1.Container{
		Name:            "gateway",
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            dataPlaneArgs(gw, o),
		// The data plane allocates per request and keeps little: a lazier collector saves CPU for
		// a few MiB of heap (GOGC=400 vs 100, 2026-11-25: 6–11 % per request under wrk in
		// BenchmarkThroughputWrk, up to a quarter in the in-process BenchmarkThroughput).
		Env: []corev1.EnvVar{{Name: "GOGC", Value: "400"}},
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: httpPort, Protocol: corev1.ProtocolTCP},
			{Name: "health", ContainerPort: healthPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: probe("/readyz", 2),
		LivenessProbe:  probe("/healthz", 10),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	t.Spec.Containers = []corev1.Container{c}
	// The data plane drains for --drain-delay (5 s) and gives in-flight answers --drain-timeout
	// (25 s) after SIGTERM; the kubelet must not kill it before.
	t.Spec.TerminationGracePeriodSeconds = ptr.To[int64](40)
}

// setService fills the data plane's Service: one port per HTTP listener, NodePort when the
// Gateway is the published one.
func setService(s *corev1.Service, gw *gatewayv1.Gateway, nodePort int32) {
	s.Labels = mergeLabels(s.Labels, labels(gw))
	s.Spec.Selector = selector(gw)
	s.Spec.Type = corev1.ServiceTypeClusterIP
	if nodePort > 0 {
		s.Spec.Type = corev1.ServiceTypeNodePort
	}
	old := map[int32]int32{} // keep node ports the API server assigned
	for _, p := range s.Spec.Ports {
		old[p.Port] = p.NodePort
	}
	var ports []corev1.ServicePort
	for _, l := range gw.Spec.Listeners {
		if !supported(l) || hasPort(ports, l.Port) {
			continue
		}
		sp := corev1.ServicePort{Name: string(l.Name), Port: l.Port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}
		if nodePort > 0 {
			sp.NodePort = old[l.Port]
			if len(ports) == 0 {
				sp.NodePort = nodePort
			}
		}
		ports = append(ports, sp)
	}
	s.Spec.Ports = ports
}

func hasPort(ports []corev1.ServicePort, port int32) bool {
	for _, p := range ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// supported reports whether the data plane can serve a listener: plain HTTP only.
func supported(l gatewayv1.Listener) bool { return l.Protocol == gatewayv1.HTTPProtocolType }

func setRoleBinding(rb *rbacv1.RoleBinding, gw *gatewayv1.Gateway) {
	rb.Labels = mergeLabels(rb.Labels, labels(gw))
	rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: DataPlaneClusterRole}
	rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: objectName(gw), Namespace: gw.Namespace}}
}

func mergeLabels(have, want map[string]string) map[string]string {
	if have == nil {
		have = map[string]string{}
	}
	for k, v := range want {
		have[k] = v
	}
	return have
}
