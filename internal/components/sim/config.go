// Package sim is a vLLM-compatible inference simulator that behaves like llm-d-inference-sim
// (shared/facts/llm-d-facts.md §1): the same endpoints, request fields, error bodies, flags,
// YAML keys and vllm:* metrics, with queueing, latency and KV-cache models that make a CPU
// pod look like a loaded GPU to gateways, endpoint pickers and autoscalers.
package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Generation modes.
const (
	ModeRandom = "random"
	ModeEcho   = "echo"
)

// Latency calculators; the empty string is upstream's legacy choice between the two.
const (
	CalculatorConstant = "constant"
	CalculatorPerToken = "per-token"
)

// Failure types of --failure-types (facts §1.6).
const (
	FailureRateLimit      = "rate_limit"
	FailureInvalidAPIKey  = "invalid_api_key"
	FailureContextLength  = "context_length"
	FailureServerError    = "server_error"
	FailureInvalidRequest = "invalid_request"
	FailureModelNotFound  = "model_not_found"
)

var allFailureTypes = []string{FailureRateLimit, FailureInvalidAPIKey, FailureContextLength,
	FailureServerError, FailureInvalidRequest, FailureModelNotFound}

// Duration is a latency knob. Upstream takes Go durations ("100ms") and still accepts bare
// integers as milliseconds (deprecated), both on the command line and in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Set parses a flag value.
func (d *Duration) Set(s string) error {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		*d = Duration(time.Duration(ms) * time.Millisecond)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a Go duration such as 100ms", s)
	}
	*d = Duration(v)
	return nil
}

// Type names the flag value type in help output.
func (d *Duration) Type() string { return "duration" }

// UnmarshalJSON accepts "100ms" or a number of milliseconds (YAML goes through JSON).
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return d.Set(s)
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("invalid duration %s", b)
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// LoraModule is one entry of --lora-modules.
type LoraModule struct {
	Name          string `json:"name"`
	Path          string `json:"path"`
	BaseModelName string `json:"base_model_name,omitempty"`
}

// LoraModules decodes upstream's YAML form (a list of JSON strings) as well as a list of
// plain objects, which is what people tend to write in YAML.
type LoraModules []LoraModule

// UnmarshalJSON accepts both element forms.
func (l *LoraModules) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("lora-modules must be a list: %w", err)
	}
	out := make(LoraModules, 0, len(raw))
	for _, r := range raw {
		m, err := parseLoraModule(r)
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	*l = out
	return nil
}

func parseLoraModule(r []byte) (LoraModule, error) {
	r = bytes.TrimSpace(r)
	if len(r) > 0 && r[0] == '"' {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return LoraModule{}, err
		}
		r = []byte(s)
	}
	var m LoraModule
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return LoraModule{}, fmt.Errorf("invalid lora module %s: %w", r, err)
	}
	if m.Name == "" {
		return LoraModule{}, fmt.Errorf("lora module %s has no name", r)
	}
	return m, nil
}

// Config holds every setting of the simulator. JSON tags are the upstream flag names, which
// are also the YAML keys of --config (sigs.k8s.io/yaml reads YAML through these tags).
type Config struct {
	Port                  int         `json:"port"`
	Model                 string      `json:"model"`
	ServedModelNames      []string    `json:"served-model-name"`
	Mode                  string      `json:"mode"`
	MaxNumSeqs            int         `json:"max-num-seqs"`
	MaxWaitingQueueLength int         `json:"max-waiting-queue-length"`
	MaxModelLen           int         `json:"max-model-len"`
	MaxLoras              int         `json:"max-loras"`
	MaxCPULoras           int         `json:"max-cpu-loras"`
	LoraModules           LoraModules `json:"lora-modules"`
	MaxRequestBodySizeMB  int         `json:"max-request-body-size-mb"`
	DataParallelSize      int         `json:"data-parallel-size"`

	LatencyCalculator            string   `json:"latency-calculator"`
	TimeToFirstToken             Duration `json:"time-to-first-token"`
	TimeToFirstTokenStdDev       Duration `json:"time-to-first-token-std-dev"`
	InterTokenLatency            Duration `json:"inter-token-latency"`
	InterTokenLatencyStdDev      Duration `json:"inter-token-latency-std-dev"`
	PrefillOverhead              Duration `json:"prefill-overhead"`
	PrefillTimePerToken          Duration `json:"prefill-time-per-token"`
	PrefillTimeStdDev            Duration `json:"prefill-time-std-dev"`
	KVCacheTransferLatency       Duration `json:"kv-cache-transfer-latency"`
	KVCacheTransferLatencyStdDev Duration `json:"kv-cache-transfer-latency-std-dev"`
	KVCacheTransferTimePerToken  Duration `json:"kv-cache-transfer-time-per-token"`
	KVCacheTransferTimeStdDev    Duration `json:"kv-cache-transfer-time-std-dev"`
	TimeFactorUnderLoad          float64  `json:"time-factor-under-load"`
	// LatencyProfile is this project's addition (not an upstream key): it presets the latency
	// knobs from the gpu-node-mocker's profiles; explicitly set knobs still win.
	LatencyProfile string `json:"latency-profile"`

	Seed int64 `json:"seed"`

	// Ranges of randomly generated tool-call arguments (upstream's defaults).
	MaxToolCallIntegerParam                   int     `json:"max-tool-call-integer-param"`
	MinToolCallIntegerParam                   int     `json:"min-tool-call-integer-param"`
	MaxToolCallNumberParam                    float64 `json:"max-tool-call-number-param"`
	MinToolCallNumberParam                    float64 `json:"min-tool-call-number-param"`
	MaxToolCallArrayParamLength               int     `json:"max-tool-call-array-param-length"`
	MinToolCallArrayParamLength               int     `json:"min-tool-call-array-param-length"`
	ToolCallNotRequiredParamProbability       int     `json:"tool-call-not-required-param-probability"`
	ObjectToolCallNotRequiredParamProbability int     `json:"object-tool-call-not-required-field-probability"`

	EnableKVCache           bool    `json:"enable-kvcache"`
	KVCacheSize             int     `json:"kv-cache-size"`
	BlockSize               int     `json:"block-size"`
	HashSeed                string  `json:"hash-seed"`
	GlobalCacheHitThreshold float64 `json:"global-cache-hit-threshold"`
	ZMQEndpoint             string  `json:"zmq-endpoint"`
	ZMQMaxConnectAttempts   int     `json:"zmq-max-connect-attempts"`
	EventBatchSize          int     `json:"event-batch-size"`

	FailureInjectionRate int      `json:"failure-injection-rate"`
	FailureTypes         []string `json:"failure-types"`

	StartupDuration        Duration `json:"startup-duration"`
	EnableRequestIDHeaders bool     `json:"enable-request-id-headers"`
	EnableSleepMode        bool     `json:"enable-sleep-mode"`
	ForceDummyTokenizer    bool     `json:"force-dummy-tokenizer"`
	RenderURL              string   `json:"render-url"`

	// Accepted for vLLM command-line compatibility and ignored (facts §1.7).
	EnablePrefixCaching  *bool  `json:"enable-prefix-caching,omitempty"`
	TensorParallelSize   int    `json:"tensor-parallel-size,omitempty"`
	EnforceEager         bool   `json:"enforce-eager,omitempty"`
	GPUMemoryUtilization string `json:"gpu-memory-utilization,omitempty"`
	Tokenizer            string `json:"tokenizer,omitempty"`
}

// DefaultConfig returns upstream's defaults (facts §1.7).
func DefaultConfig() Config {
	return Config{
		Port:                  8000,
		Mode:                  ModeRandom,
		MaxNumSeqs:            5,
		MaxWaitingQueueLength: 1000,
		MaxModelLen:           1024,
		MaxLoras:              1,
		MaxRequestBodySizeMB:  4,
		DataParallelSize:      1,
		TimeFactorUnderLoad:   1.0,
		Seed:                  time.Now().UnixNano(),

		MaxToolCallIntegerParam:                   100,
		MaxToolCallNumberParam:                    100,
		MaxToolCallArrayParamLength:               5,
		MinToolCallArrayParamLength:               1,
		ToolCallNotRequiredParamProbability:       50,
		ObjectToolCallNotRequiredParamProbability: 50,
		KVCacheSize:           1024,
		BlockSize:             16,
		ZMQEndpoint:           "tcp://127.0.0.1:5557",
		ZMQMaxConnectAttempts: 0,
		EventBatchSize:        16,
		RenderURL:             "http://localhost:8082",
	}
}

// loadYAML overlays a --config document onto c. Unknown keys are an error that names the
// key, because a misspelt latency knob would otherwise silently leave a default in place.
func (c *Config) loadYAML(data []byte) error {
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return fmt.Errorf("parse YAML: %w", err)
	}
	return nil
}

// DisplayModel is the name used in responses and metric labels: the first served name.
func (c *Config) DisplayModel() string {
	if len(c.ServedModelNames) > 0 {
		return c.ServedModelNames[0]
	}
	return c.Model
}

// Validate checks ranges the way upstream does, so a config that upstream rejects fails
// here too instead of running with surprising values.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Model == "" {
		bad("model parameter is empty (set --model or SIM_MODEL)")
	}
	if c.Mode != ModeRandom && c.Mode != ModeEcho {
		bad("invalid mode %q, valid values are %q and %q", c.Mode, ModeRandom, ModeEcho)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("invalid port %d", c.Port)
	}
	if c.MaxNumSeqs < 1 {
		bad("max-num-seqs must be at least 1, got %d", c.MaxNumSeqs)
	}
	if c.MaxWaitingQueueLength < 1 {
		bad("max-waiting-queue-length must be at least 1, got %d", c.MaxWaitingQueueLength)
	}
	if c.MaxModelLen < 1 {
		bad("max-model-len must be at least 1, got %d", c.MaxModelLen)
	}
	if c.MaxLoras < 1 {
		bad("max-loras must be at least 1, got %d", c.MaxLoras)
	}
	if c.MaxCPULoras != 0 && c.MaxCPULoras < c.MaxLoras {
		bad("max-cpu-loras (%d) must be at least max-loras (%d)", c.MaxCPULoras, c.MaxLoras)
	}
	if c.MaxRequestBodySizeMB < 1 || c.MaxRequestBodySizeMB > 512 {
		bad("max-request-body-size-mb must be within 1..512, got %d", c.MaxRequestBodySizeMB)
	}
	if c.DataParallelSize < 1 || c.DataParallelSize > 8 {
		bad("data-parallel-size must be within 1..8, got %d", c.DataParallelSize)
	}
	switch c.LatencyCalculator {
	case "", CalculatorConstant, CalculatorPerToken:
	default:
		bad("invalid latency-calculator %q, valid values are %q and %q", c.LatencyCalculator, CalculatorConstant, CalculatorPerToken)
	}
	if _, ok := latencyProfiles[c.LatencyProfile]; !ok && c.LatencyProfile != "" && c.LatencyProfile != ProfileAuto {
		bad("invalid latency-profile %q, valid values are %s", c.LatencyProfile, strings.Join(ProfileNames(), ", "))
	}
	for _, k := range []struct {
		name       string
		mean, std  Duration
		stdName    string
		checkRatio bool
	}{
		{"time-to-first-token", c.TimeToFirstToken, c.TimeToFirstTokenStdDev, "time-to-first-token-std-dev", true},
		{"inter-token-latency", c.InterTokenLatency, c.InterTokenLatencyStdDev, "inter-token-latency-std-dev", true},
		{"kv-cache-transfer-latency", c.KVCacheTransferLatency, c.KVCacheTransferLatencyStdDev, "kv-cache-transfer-latency-std-dev", true},
		{"prefill-time-per-token", c.PrefillTimePerToken, c.PrefillTimeStdDev, "prefill-time-std-dev", true},
		{"kv-cache-transfer-time-per-token", c.KVCacheTransferTimePerToken, c.KVCacheTransferTimeStdDev, "kv-cache-transfer-time-std-dev", true},
		{"prefill-overhead", c.PrefillOverhead, 0, "", false},
		{"startup-duration", c.StartupDuration, 0, "", false},
	} {
		if k.mean < 0 {
			bad("%s cannot be negative", k.name)
		}
		if k.std < 0 {
			bad("%s cannot be negative", k.stdName)
		}
		if k.checkRatio && float64(k.std) > 0.3*float64(k.mean) {
			bad("%s (%s) cannot be more than 30%% of %s (%s)", k.stdName, k.std, k.name, k.mean)
		}
	}
	if c.MinToolCallIntegerParam > c.MaxToolCallIntegerParam || c.MinToolCallNumberParam > c.MaxToolCallNumberParam {
		bad("min-tool-call-*-param must not exceed max-tool-call-*-param")
	}
	if c.MinToolCallArrayParamLength < 0 || c.MinToolCallArrayParamLength > c.MaxToolCallArrayParamLength {
		bad("tool-call array lengths must satisfy 0 <= min-tool-call-array-param-length <= max-tool-call-array-param-length")
	}
	for _, p := range []int{c.ToolCallNotRequiredParamProbability, c.ObjectToolCallNotRequiredParamProbability} {
		if p < 0 || p > 100 {
			bad("tool-call probabilities must be within 0..100, got %d", p)
		}
	}
	if c.TimeFactorUnderLoad < 1.0 {
		bad("time-factor-under-load must be >= 1.0, got %v", c.TimeFactorUnderLoad)
	}
	if c.KVCacheSize < 1 {
		bad("kv-cache-size must be at least 1, got %d", c.KVCacheSize)
	}
	if !slices.Contains([]int{8, 16, 32, 64, 128}, c.BlockSize) {
		bad("block-size must be one of 8, 16, 32, 64, 128, got %d", c.BlockSize)
	}
	if c.GlobalCacheHitThreshold < 0 || c.GlobalCacheHitThreshold > 1 {
		bad("global-cache-hit-threshold must be within [0, 1], got %v", c.GlobalCacheHitThreshold)
	}
	if c.EventBatchSize < 1 {
		bad("event-batch-size must be at least 1, got %d", c.EventBatchSize)
	}
	if c.FailureInjectionRate < 0 || c.FailureInjectionRate > 100 {
		bad("failure-injection-rate must be within 0..100, got %d", c.FailureInjectionRate)
	}
	for _, t := range c.FailureTypes {
		if !slices.Contains(allFailureTypes, t) {
			bad("invalid failure type %q, valid types are %s", t, strings.Join(allFailureTypes, ", "))
		}
	}
	seen := map[string]bool{}
	for _, n := range c.ServedModelNames {
		if n == "" {
			bad("served-model-name contains an empty name")
		}
		seen[n] = true
	}
	for _, l := range c.LoraModules {
		if seen[l.Name] || l.Name == c.Model {
			bad("lora module name %q clashes with a served model name", l.Name)
		}
	}
	return errors.Join(errs...)
}

var errNotMapping = errors.New("the config file must be a mapping of keys to values")

// yamlKeys lists the top-level keys of a YAML document.
func yamlKeys(data []byte) ([]string, error) {
	var m map[string]json.RawMessage
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, errNotMapping
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys, nil
}
