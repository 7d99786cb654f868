package scaler

import (
	"context"
	"errors"
	"math"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"

	pb "github.com/inference-sandbox/sandbox/internal/components/scaler/externalscaler"
)

// Trigger metadata keys the scaler reads (the ones DesiredScaledObject writes).
const (
	metaInferenceSetName      = "inferenceSetName"
	metaInferenceSetNamespace = "inferenceSetNamespace"
	metaMetricName            = "metricName"
	metaThreshold             = "threshold"
)

// Source is the scaler's view of the cluster.
type Source interface {
	// Ready reports whether the InferenceSet's InferenceSetReady condition is True; a missing
	// InferenceSet is an error wrapping ErrNotFound.
	Ready(ctx context.Context, set types.NamespacedName) (bool, error)
	// Endpoints lists the metrics URLs of the InferenceSet's running model pods.
	Endpoints(ctx context.Context, set types.NamespacedName) ([]Endpoint, error)
}

// ErrNotFound is returned by a Source for an InferenceSet that does not exist.
var ErrNotFound = errors.New("InferenceSet not found")

// Server implements KEDA's ExternalScaler service.
type Server struct {
	pb.UnimplementedExternalScalerServer
	Source  Source
	Scraper *Scraper
}

var _ pb.ExternalScalerServer = (*Server)(nil)

// trigger is the parsed metadata of one external trigger.
type trigger struct {
	set       types.NamespacedName
	metric    string
	threshold float64
}

func parseTrigger(ref *pb.ScaledObjectRef, needThreshold bool) (trigger, error) {
	if ref == nil {
		return trigger{}, status.Error(codes.InvalidArgument, "missing scaledObjectRef")
	}
	md := ref.GetScalerMetadata()
	t := trigger{
		set:    types.NamespacedName{Namespace: md[metaInferenceSetNamespace], Name: md[metaInferenceSetName]},
		metric: md[metaMetricName],
	}
	// KEDA sends the ScaledObject's own name and namespace too; upstream always names the
	// ScaledObject after its InferenceSet, so they stand in for hand-written triggers.
	if t.set.Namespace == "" {
		t.set.Namespace = ref.GetNamespace()
	}
	if t.set.Name == "" {
		t.set.Name = ref.GetName()
	}
	if t.set.Name == "" || t.set.Namespace == "" {
		return trigger{}, status.Errorf(codes.InvalidArgument, "trigger metadata needs %s and %s", metaInferenceSetName, metaInferenceSetNamespace)
	}
	if t.metric == "" {
		t.metric = DefaultMetricName
	}
	if needThreshold {
		raw, ok := md[metaThreshold]
		if !ok {
			return trigger{}, status.Errorf(codes.InvalidArgument, "trigger metadata needs %s", metaThreshold)
		}
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return trigger{}, status.Errorf(codes.InvalidArgument, "trigger metadata %s=%q: want a number greater than 0", metaThreshold, raw)
		}
		t.threshold = v
	}
	return t, nil
}

// IsActive is true while the InferenceSet is Ready (upstream's rule, facts §3.5). With a
// minimum of one replica it only decides KEDA's Active condition, never a scale to zero.
func (s *Server) IsActive(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	t, err := parseTrigger(ref, false)
	if err != nil {
		return nil, err
	}
	ready, err := s.Source.Ready(ctx, t.set)
	if err != nil {
		return nil, sourceError(t.set, err)
	}
	return &pb.IsActiveResponse{Result: ready}, nil
}

// StreamIsActive is for KEDA's external-push trigger, which upstream does not support either.
func (s *Server) StreamIsActive(*pb.ScaledObjectRef, pb.ExternalScaler_StreamIsActiveServer) error {
	return status.Error(codes.Unimplemented, "push mode (external-push) is not supported; use the external trigger")
}

// GetMetricSpec gives the HPA its target: threshold per replica.
func (s *Server) GetMetricSpec(_ context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	t, err := parseTrigger(ref, true)
	if err != nil {
		return nil, err
	}
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{
		MetricName:      t.metric,
		TargetSize:      int64(math.Ceil(t.threshold)),
		TargetSizeFloat: t.threshold,
	}}}, nil
}

// GetMetrics returns the metric summed over the InferenceSet's model pods, scraped now.
func (s *Server) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	t, err := parseTrigger(req.GetScaledObjectRef(), false)
	if err != nil {
		return nil, err
	}
	endpoints, err := s.Source.Endpoints(ctx, t.set)
	if err != nil {
		return nil, sourceError(t.set, err)
	}
	sum, _, err := s.Scraper.Sum(ctx, endpoints, t.metric)
	switch {
	case errors.Is(err, errNoEndpoints):
		// No pod runs yet (e.g. all Pending for want of GPUs): nothing can be waiting on one.
		sum = 0
	case err != nil:
		// Unavailable makes the HPA keep the current size instead of acting on a guess.
		return nil, status.Errorf(codes.Unavailable, "InferenceSet %s: %v", t.set, err)
	}
	name := req.GetMetricName()
	if name == "" {
		name = t.metric
	}
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{
		MetricName:       name,
		MetricValue:      int64(math.Round(sum)),
		MetricValueFloat: sum,
	}}}, nil
}

func sourceError(set types.NamespacedName, err error) error {
	if errors.Is(err, ErrNotFound) {
		return status.Errorf(codes.NotFound, "InferenceSet %s not found", set)
	}
	return status.Errorf(codes.Unavailable, "reading InferenceSet %s: %v", set, err)
}
