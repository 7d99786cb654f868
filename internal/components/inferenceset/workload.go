package inferenceset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/inference-sandbox/sandbox/internal/components/sim"
	"github.com/inference-sandbox/sandbox/internal/mocker"
)

// ServingPort is KAITO's inference port; the InferencePool targets it.
const ServingPort = 5000

// annotationTemplateHash records which pod template a replica runs, so a changed InferenceSet
// is rolled out one replica at a time.
const annotationTemplateHash = "inferenceset.kaito.sh/template-hash"

// Options configure what every replica runs.
type Options struct {
	// Image is the stackd image; replicas run `stackd sim`.
	Image string
	// MaxNumSeqs is the simulator's concurrency; requests beyond it queue, which is what
	// vllm:num_requests_waiting (and so autoscaling) measures.
	MaxNumSeqs int
	// TerminationGracePeriod bounds how long a removed replica may drain, in seconds.
	TerminationGracePeriod int64
	// PreStopSleep keeps a removed replica serving until the endpoint picker has dropped it,
	// in seconds.
	PreStopSleep int64
	// SurgeTimeout is how long a roll-out waits for its surge replica to become ready before
	// it rolls in place instead (the surge may find no free GPU).
	SurgeTimeout time.Duration
}

// DefaultOptions match upstream's simulator settings (max-num-seqs 5) and leave a removed
// replica time to finish its in-flight requests: the picker drops a terminating pod as soon
// as it sees the deletion; the pre-stop sleep covers that watch delay, and then the simulator
// drains for up to 30 s after SIGTERM.
func DefaultOptions() Options {
	return Options{MaxNumSeqs: 5, TerminationGracePeriod: 60, PreStopSleep: 5, SurgeTimeout: 2 * time.Minute}
}

// ReplicaName is the name of replica i: its StatefulSet (KAITO's Workspace analogue) and
// Service. Indexed names, rather than KAITO's random suffix, make creation idempotent without
// tracking expectations, and make "newest first" on scale-down simply "highest index first".
func ReplicaName(isName string, i int) string { return isName + "-" + strconv.Itoa(i) }

// replicaIndex parses a ReplicaName back, reporting false for names of other objects.
func replicaIndex(isName, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, isName+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 {
		return 0, false
	}
	return i, true
}

// Selector is status.selector: every pod of every replica.
func Selector(isName string) string { return LabelCreatedBy + "=" + isName }

// latency returns the simulator latency profile and calculator the InferenceSet asks for.
// The template's annotations (where the chart puts them) win over the InferenceSet's own.
func latency(is *InferenceSet) (profile, calculator string) {
	for _, a := range []map[string]string{is.Annotations, is.Spec.Template.Metadata.Annotations} {
		if v := a[AnnotationLatencyProfile]; v != "" {
			profile = v
		}
		if v := a[AnnotationLatencyCalculator]; v != "" {
			calculator = v
		}
	}
	if profile == "" {
		profile = sim.ProfileAuto
	}
	return profile, calculator
}

// Validate reports what would keep the InferenceSet's replicas from starting, in words a user
// can act on; the reconciler puts it in the Ready condition instead of crash-looping pods.
func Validate(is *InferenceSet) error {
	if is.Spec.Template.Inference.Preset == nil || is.Spec.Template.Inference.Preset.Name == "" {
		return fmt.Errorf("spec.template.inference.preset.name is required (the offline controller serves presets only)")
	}
	profile, calc := latency(is)
	if !slices.Contains(sim.ProfileNames(), profile) {
		return fmt.Errorf("annotation %s=%q: must be one of %s", AnnotationLatencyProfile, profile, strings.Join(sim.ProfileNames(), ", "))
	}
	if calc != "" && calc != sim.CalculatorPerToken && calc != sim.CalculatorConstant {
		return fmt.Errorf("annotation %s=%q: must be %s or %s", AnnotationLatencyCalculator, calc, sim.CalculatorPerToken, sim.CalculatorConstant)
	}
	if extra := extraSimArgs(is); len(extra) > 0 {
		for _, a := range extra {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if strings.HasPrefix(a, "-") && slices.Contains(reservedSimFlags, name) {
				return fmt.Errorf("annotation %s: --%s is set by the controller (the pool, the probes and the router rely on it)", AnnotationSimulatorArgs, name)
			}
		}
		// The replica's flags as a whole must parse, so that a typo is reported here instead of
		// as crash-looping pods.
		if _, err := sim.ParseArgs(SimArgs(is, DefaultOptions())[1:], func(string) string { return "" }); err != nil {
			return fmt.Errorf("annotation %s=%q: %w", AnnotationSimulatorArgs, strings.Join(extra, " "), err)
		}
	}
	if len(ReplicaName(is.Name, 999)) > 52 {
		// StatefulSet pods get a controller-revision-hash label of name+hash, capped at 63.
		return fmt.Errorf("name %q is too long: at most 48 characters", is.Name)
	}
	return nil
}

// SimArgs are the arguments of the replica's `stackd sim`: the preset is the base model, the
// InferenceSet name the served name (clients and the body-based router use it), on port 5000,
// with the upstream mocker's simulator settings (upstream-production-stack.md §4.3).
func SimArgs(is *InferenceSet, o Options) []string {
	profile, calc := latency(is)
	args := []string{"sim",
		"--model", is.Spec.Template.Inference.Preset.Name,
		"--served-model-name", is.Name,
		"--port", strconv.Itoa(ServingPort),
		"--max-num-seqs", strconv.Itoa(o.MaxNumSeqs),
		"--max-model-len", "32768",
		"--enable-kvcache",
		"--kv-cache-size", "10240",
		"--block-size", "16",
		"--mode", "random",
		"--latency-profile", profile,
	}
	if calc != "" {
		args = append(args, "--latency-calculator", calc)
	}
	return append(args, extraSimArgs(is)...)
}

// reservedSimFlags are the simulator flags the InferencePool, probes and routes depend on.
var reservedSimFlags = []string{"port", "model", "served-model-name", "data-parallel-size", "config"}

// extraSimArgs are the simulator flags the InferenceSet's annotation adds.
func extraSimArgs(is *InferenceSet) []string {
	var v string
	for _, a := range []map[string]string{is.Annotations, is.Spec.Template.Metadata.Annotations} {
		if s := a[AnnotationSimulatorArgs]; s != "" {
			v = s
		}
	}
	return strings.Fields(v)
}

// replicaSelector selects replica name's pods; it is immutable once the StatefulSet exists.
func replicaSelector(is *InferenceSet, name string) map[string]string {
	return map[string]string{LabelWorkspace: name, LabelCreatedBy: is.Name}
}

// podTemplate is what every replica's pod looks like; it does not depend on the index, so its
// hash tells whether a replica is current.
func podTemplate(is *InferenceSet, name string, o Options) corev1.PodTemplateSpec {
	labels := replicaSelector(is, name)
	// One pod per replica, so its index is always 0; the StatefulSet controller sets the same
	// label, this makes it independent of the PodIndexLabel feature.
	labels[LabelPodIndex] = "0"
	profile, calc := latency(is)
	annotations := map[string]string{AnnotationLatencyProfile: profile}
	if calc != "" {
		annotations[AnnotationLatencyCalculator] = calc
	}
	gpu := corev1.ResourceList{mocker.GPUResource: resource.MustParse("1")}
	requests := maps.Clone(gpu)
	requests[corev1.ResourceCPU] = resource.MustParse("20m")
	requests[corev1.ResourceMemory] = resource.MustParse("48Mi")
	limits := maps.Clone(gpu)
	limits[corev1.ResourceMemory] = resource.MustParse("512Mi")
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromString("http")}},
			PeriodSeconds:    period,
			FailureThreshold: failures,
		}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(o.TerminationGracePeriod),
			AutomountServiceAccountToken:  ptr.To(false),
			// A namespace with many model Services would otherwise fill every pod's environment.
			EnableServiceLinks: ptr.To(false),
			Affinity:           nodeAffinity(is.Spec.LabelSelector),
			Tolerations: []corev1.Toleration{
				{Key: string(mocker.GPUResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
				{Key: "sku", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
			},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				// KAITO names the inference container after the Workspace.
				Name:            name,
				Image:           o.Image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            SimArgs(is, o),
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: ServingPort, Protocol: corev1.ProtocolTCP}},
				Resources:       corev1.ResourceRequirements{Requests: requests, Limits: limits},
				ReadinessProbe:  probe(2, 3),
				LivenessProbe:   probe(10, 3),
				Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
					Sleep: &corev1.SleepAction{Seconds: o.PreStopSleep},
				}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// reservedSelectorKeys are dropped from node affinity, as KAITO does (facts §1.4).
var reservedSelectorKeys = []string{
	"kaito.sh/workspace", "kaito.sh/ragengine", "kaito.sh/workspacenamespace", "kaito.sh/ragenginenamespace",
	"karpenter.kaito.sh/workspace-name", "karpenter.kaito.sh/workspace-namespace",
	"karpenter.kaito.sh/inferenceset", "karpenter.kaito.sh/inferenceset-namespace",
}

// nodeAffinity turns labelSelector.matchLabels into required node-affinity terms, as KAITO
// does without node auto-provisioning; matchExpressions are ignored there too.
func nodeAffinity(sel *metav1.LabelSelector) *corev1.Affinity {
	if sel == nil {
		return nil
	}
	var reqs []corev1.NodeSelectorRequirement
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		if slices.Contains(reservedSelectorKeys, k) {
			continue
		}
		reqs = append(reqs, corev1.NodeSelectorRequirement{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{sel.MatchLabels[k]}})
	}
	if len(reqs) == 0 {
		return nil
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: reqs}},
		},
	}}
}

// templateHash fingerprints a pod template.
func templateHash(t corev1.PodTemplateSpec) string {
	data, _ := json.Marshal(t) // a PodTemplateSpec always marshals
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:5])
}

// objectLabels go on the replica's StatefulSet and Services: the template labels (KAITO puts
// them on the Workspace, not on preset pods) under the ones this controller relies on.
func objectLabels(is *InferenceSet, name string) map[string]string {
	l := maps.Clone(is.Spec.Template.Metadata.Labels)
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, replicaSelector(is, name))
	return l
}

// setStatefulSet makes sts replica name of is. The selector is set only on creation because it
// is immutable.
func setStatefulSet(sts *appsv1.StatefulSet, is *InferenceSet, name string, o Options) {
	tmpl := podTemplate(is, name, o)
	sts.Labels = objectLabels(is, name)
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[annotationTemplateHash] = templateHash(tmpl)
	sts.Spec.Replicas = ptr.To[int32](1)
	if sts.Spec.Selector == nil {
		sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: replicaSelector(is, name)}
	}
	sts.Spec.ServiceName = name + "-headless"
	sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	sts.Spec.Template = tmpl
}

// setService makes svc the replica's own Service, as KAITO's Workspace Service: port 80 to the
// model server on pod index 0. keda-kaito-scaler scrapes metrics through it.
func setService(svc *corev1.Service, is *InferenceSet, name string) {
	svc.Labels = objectLabels(is, name)
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.Selector = map[string]string{LabelWorkspace: name, "statefulset.kubernetes.io/pod-name": name + "-0"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(ServingPort), Protocol: corev1.ProtocolTCP}}
	svc.Spec.PublishNotReadyAddresses = true
}

// replica is what the reconciler knows about one existing replica.
type replica struct {
	index    int
	ready    bool
	current  bool // runs the desired pod template
	deleting bool
	// stale marks a replica that has not become ready within SurgeTimeout of its creation,
	// e.g. because no fake GPU is free.
	stale bool
	// young marks a replica created less than SurgeTimeout ago: a surge replica of a roll-out,
	// rather than one a scale-down is removing.
	young bool
}

// plan is what to do with the replicas this pass.
type plan struct {
	create []int // missing indices below desired, and a surge replica above them
	update []int // outdated replicas to roll now
	remove []int // replicas at or above desired, highest (newest) first
	wait   bool  // something is in flight; look again soon
}

// planReplicas decides creation, roll-out and removal. Replicas 0..desired-1 are kept; higher
// ones go, newest first. A template change never takes serving capacity below desired: before
// an outdated ready replica is rolled, a surge replica (the lowest index at or above desired)
// is started and must be ready, and only one replica rolls at a time, only while every other kept
// replica is ready. If the surge cannot start (stale: no free GPU), the roll goes ahead in place.
// A replica that is not ready anyway is rolled at once. The surge is removed once every kept
// replica is current and ready, or once it is no longer young. A scale-down removes its (old)
// replicas at once, whatever the state of the kept ones, so a replica that waits for a GPU is
// never starved by one that is going.
func planReplicas(desired int, have []replica) plan {
	var p plan
	byIndex := map[int]replica{}
	for _, r := range have {
		byIndex[r.index] = r
	}
	notReady := 0
	var outdatedReady []int
	for i := 0; i < desired; i++ {
		r, ok := byIndex[i]
		switch {
		case !ok:
			p.create = append(p.create, i)
			notReady++
		case r.deleting:
			p.wait = true // the old replica of this index must be gone before it is recreated
			notReady++
		case !r.current && !r.ready:
			p.update = append(p.update, i) // nothing to lose
			notReady++
		case !r.ready:
			notReady++
		case !r.current:
			outdatedReady = append(outdatedReady, i)
		}
	}

	// The surge: the lowest live replica above the kept ones that runs the current template.
	surge := -1
	var extras []replica
	for _, r := range have {
		if r.index >= desired && !r.deleting {
			extras = append(extras, r)
		}
	}
	slices.SortFunc(extras, func(a, b replica) int { return a.index - b.index })
	for _, r := range extras {
		if r.current {
			surge = r.index
			break
		}
	}
	keepSurge := false
	if len(outdatedReady) > 0 {
		p.wait = true
		switch {
		case notReady > 0:
			// one replica is already down or rolling; the next waits
			keepSurge = surge >= 0
		case surge >= 0 && byIndex[surge].ready:
			p.update = append(p.update, outdatedReady[0])
			keepSurge = true
		case surge >= 0 && !byIndex[surge].stale:
			keepSurge = true // starting
		case surge >= 0 || desired == 0:
			p.update = append(p.update, outdatedReady[0]) // no room for a surge: roll in place
		default:
			surge = desired
			for _, r := range have {
				if r.index == surge { // a terminating replica holds the index
					surge = -1
				}
			}
			if surge >= 0 {
				p.create = append(p.create, surge)
				keepSurge = true
			}
		}
	} else if notReady > 0 && surge >= 0 && byIndex[surge].ready && byIndex[surge].young {
		// The last rolled replica is restarting: the surge serves until it is back.
		keepSurge = true
		p.wait = true
	}
	for _, r := range extras {
		if keepSurge && r.index == surge {
			continue
		}
		p.remove = append(p.remove, r.index)
	}
	slices.Reverse(p.remove)
	return p
}
