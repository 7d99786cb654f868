package scaler

import (
	"errors"
	"testing"
)

func TestParseConfig(t *testing.T) {
	on := func(kv ...string) map[string]string {
		m := map[string]string{AnnotationAutoProvision: "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		ann    map[string]string
		limit  int64
		want   Config
		reason string // ConfigError reason; "" = valid
		off    bool
	}{
		{name: "not annotated", ann: map[string]string{}, off: true},
		{name: "switched off", ann: map[string]string{AnnotationAutoProvision: "false", AnnotationThreshold: "10"}, off: true},
		{name: "chart defaults", ann: on(AnnotationThreshold, "10", AnnotationMinReplicas, "1", AnnotationMaxReplicas, "4"),
			want: Config{Threshold: 10, MetricName: DefaultMetricName, MinReplicas: 1, MaxReplicas: 4}},
		{name: "metric and fractional threshold", ann: on(AnnotationThreshold, "2.5", AnnotationMetricName, "vllm:num_requests_running", AnnotationMaxReplicas, "3"),
			want: Config{Threshold: 2.5, MetricName: "vllm:num_requests_running", MinReplicas: 1, MaxReplicas: 3}},
		{name: "min below one is one", ann: on(AnnotationThreshold, "10", AnnotationMinReplicas, "0", AnnotationMaxReplicas, "2"),
			want: Config{Threshold: 10, MetricName: DefaultMetricName, MinReplicas: 1, MaxReplicas: 2}},
		{name: "max from nodeCountLimit", ann: on(AnnotationThreshold, "10"), limit: 3,
			want: Config{Threshold: 10, MetricName: DefaultMetricName, MinReplicas: 1, MaxReplicas: 3}},
		{name: "annotation wins over nodeCountLimit", ann: on(AnnotationThreshold, "10", AnnotationMaxReplicas, "5"), limit: 3,
			want: Config{Threshold: 10, MetricName: DefaultMetricName, MinReplicas: 1, MaxReplicas: 5}},
		{name: "no threshold", ann: on(AnnotationMaxReplicas, "4"), reason: "InvalidConfig"},
		{name: "zero threshold", ann: on(AnnotationThreshold, "0", AnnotationMaxReplicas, "4"), reason: "InvalidConfig"},
		{name: "NaN threshold", ann: on(AnnotationThreshold, "NaN", AnnotationMaxReplicas, "4"), reason: "InvalidConfig"},
		{name: "no max and no limit", ann: on(AnnotationThreshold, "10"), reason: "InvalidConfig"},
		{name: "bad max", ann: on(AnnotationThreshold, "10", AnnotationMaxReplicas, "many"), reason: "InvalidConfig"},
		{name: "bad metric name", ann: on(AnnotationThreshold, "10", AnnotationMaxReplicas, "2", AnnotationMetricName, "queue depth"), reason: "InvalidConfig"},
		{name: "max below min", ann: on(AnnotationThreshold, "10", AnnotationMinReplicas, "3", AnnotationMaxReplicas, "2"), reason: "InvalidReplicaRange"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.ann, tc.limit)
			var cerr *ConfigError
			switch {
			case tc.off:
				if !errors.Is(err, errNotRequested) {
					t.Fatalf("err = %v, want errNotRequested", err)
				}
			case tc.reason != "":
				if !errors.As(err, &cerr) || cerr.Reason != tc.reason {
					t.Fatalf("err = %v, want ConfigError %s", err, tc.reason)
				}
			case err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("true", "10", "vllm:num_requests_waiting", "1", "4", int64(0))
	f.Add("true", "-1", "", "x", "", int64(2))
	f.Fuzz(func(t *testing.T, auto, threshold, metric, minR, maxR string, limit int64) {
		cfg, err := ParseConfig(map[string]string{AnnotationAutoProvision: auto, AnnotationThreshold: threshold,
			AnnotationMetricName: metric, AnnotationMinReplicas: minR, AnnotationMaxReplicas: maxR}, limit)
		if err != nil {
			return
		}
		// Whatever the input, an accepted config must make a valid HPA.
		if cfg.Threshold <= 0 || cfg.MinReplicas < 1 || cfg.MaxReplicas < cfg.MinReplicas || !validMetricName(cfg.MetricName) {
			t.Fatalf("accepted an unusable config %+v", cfg)
		}
	})
}
