// Package scaler is the offline stand-in for keda-kaito-scaler (kaito-keda-auth-facts §3):
// a controller that turns annotated InferenceSets into KEDA ScaledObjects, and the KEDA
// external scaler (gRPC, mutual TLS) those ScaledObjects point at, which answers with the
// summed metric of the InferenceSet's model pods.
//
// It speaks the v0.5 annotation dialect (threshold / metricName / min-replicas /
// max-replicas), the one the modeldeployment chart this repository renders uses.
package scaler

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Annotation keys on the InferenceSet (facts §3.3, v0.4–v0.5 column).
const (
	annotationPrefix        = "scaledobject.kaito.sh/"
	AnnotationAutoProvision = annotationPrefix + "auto-provision"
	AnnotationThreshold     = annotationPrefix + "threshold"
	AnnotationMetricName    = annotationPrefix + "metricName"
	AnnotationMinReplicas   = annotationPrefix + "min-replicas"
	AnnotationMaxReplicas   = annotationPrefix + "max-replicas"
	// AnnotationManagedBy marks the ScaledObjects this controller owns, so it never
	// touches (or deletes) a ScaledObject a user wrote by hand under the same name.
	AnnotationManagedBy = annotationPrefix + "managed-by"
	// ManagedByValue is upstream's value, kept so tools that look for it still work.
	ManagedByValue = "keda-kaito-scaler"

	// DefaultMetricName is what upstream scales on when metricName is absent.
	DefaultMetricName = "vllm:num_requests_waiting"
)

// errNotRequested means the InferenceSet does not ask for autoscaling at all, as opposed to
// asking with a bad configuration.
var errNotRequested = errors.New("autoscaling not requested")

// Config is an InferenceSet's autoscaling request, parsed from its annotations.
type Config struct {
	Threshold   float64
	MetricName  string
	MinReplicas int32
	MaxReplicas int32
}

// ConfigError is an annotation set that asks for autoscaling but cannot be honoured; Reason
// is the Event reason shown on the InferenceSet.
type ConfigError struct {
	Reason string
	Err    error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func invalid(reason, format string, args ...any) error {
	return &ConfigError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ParseConfig reads the annotations. nodeCountLimit is spec.nodeCountLimit (0 when unset):
// upstream uses it as the replica ceiling when max-replicas is absent, since without GPU
// partitioning one replica occupies one node.
func ParseConfig(annotations map[string]string, nodeCountLimit int64) (Config, error) {
	if !strings.EqualFold(strings.TrimSpace(annotations[AnnotationAutoProvision]), "true") {
		return Config{}, errNotRequested
	}
	cfg := Config{MetricName: DefaultMetricName, MinReplicas: 1}

	raw, ok := annotations[AnnotationThreshold]
	if !ok {
		return Config{}, invalid("InvalidConfig", "annotation %s is required", AnnotationThreshold)
	}
	t, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	// A zero target would make the HPA divide by zero: KEDA rejects it, so say so here.
	if err != nil || math.IsNaN(t) || math.IsInf(t, 0) || t <= 0 {
		return Config{}, invalid("InvalidConfig", "annotation %s=%q: want a number greater than 0", AnnotationThreshold, raw)
	}
	cfg.Threshold = t

	if name := strings.TrimSpace(annotations[AnnotationMetricName]); name != "" {
		if !validMetricName(name) {
			return Config{}, invalid("InvalidConfig", "annotation %s=%q is not a Prometheus metric name", AnnotationMetricName, name)
		}
		cfg.MetricName = name
	}

	if raw, ok := annotations[AnnotationMinReplicas]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 32)
		if err != nil {
			return Config{}, invalid("InvalidConfig", "annotation %s=%q: want an integer", AnnotationMinReplicas, raw)
		}
		// Upstream never scales to zero: a model with no replica could not report load.
		cfg.MinReplicas = int32(max(n, 1))
	}

	switch raw, ok := annotations[AnnotationMaxReplicas]; {
	case ok:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 32)
		if err != nil || n < 1 {
			return Config{}, invalid("InvalidConfig", "annotation %s=%q: want an integer of at least 1", AnnotationMaxReplicas, raw)
		}
		cfg.MaxReplicas = int32(n)
	case nodeCountLimit > 0:
		cfg.MaxReplicas = int32(min(nodeCountLimit, math.MaxInt32))
	default:
		return Config{}, invalid("InvalidConfig", "annotation %s is required when spec.nodeCountLimit is not set", AnnotationMaxReplicas)
	}
	if cfg.MaxReplicas < cfg.MinReplicas {
		return Config{}, invalid("InvalidReplicaRange", "max-replicas %d is below min-replicas %d", cfg.MaxReplicas, cfg.MinReplicas)
	}
	return cfg, nil
}

// validMetricName accepts the legacy Prometheus name syntax ([a-zA-Z_:][a-zA-Z0-9_:]*), which
// every vLLM metric uses; the scrape parser works in that mode.
func validMetricName(s string) bool {
	for i, c := range s {
		switch {
		case c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}
