package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeYAML(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEnv(string) string { return "" }

// The shadow-pod ConfigMap of the gpu-node-mocker (facts upstream-production-stack §4.3).
const mockerConfig = `port: 5000
model: "phi-4-mini"
served-model-name: ["phi-4-mini"]
mode: "random"
max-num-seqs: 5
max-model-len: 32768
enable-kvcache: true
kv-cache-size: 10240
block-size: 16
force-dummy-tokenizer: true
latency-calculator: per-token
inter-token-latency: 12ms
inter-token-latency-std-dev: 2ms
time-factor-under-load: 2.0
prefill-overhead: 30ms
prefill-time-per-token: 250us
prefill-time-std-dev: 50us
kv-cache-transfer-time-per-token: 3us
kv-cache-transfer-time-std-dev: 600ns
`

func TestParseArgsMockerConfigMap(t *testing.T) {
	cfg, err := ParseArgs([]string{"--config", writeYAML(t, mockerConfig)}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 5000 || cfg.Model != "phi-4-mini" || cfg.MaxModelLen != 32768 || !cfg.EnableKVCache ||
		cfg.KVCacheSize != 10240 || cfg.PrefillTimePerToken.D() != 250*time.Microsecond || cfg.TimeFactorUnderLoad != 2 ||
		cfg.KVCacheTransferTimeStdDev.D() != 600*time.Nanosecond {
		t.Errorf("config not loaded: %+v", cfg)
	}
}

func TestParseArgsUnknownYAMLKeyIsNamed(t *testing.T) {
	_, err := ParseArgs([]string{"--config", writeYAML(t, "model: m\ntime-to-first-tokn: 10ms\n")}, noEnv)
	if err == nil || !strings.Contains(err.Error(), "time-to-first-tokn") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
}

func TestParseArgsPrecedence(t *testing.T) {
	path := writeYAML(t, "model: from-yaml\nport: 7000\nmax-num-seqs: 9\ninter-token-latency: 40\nfailure-types: [rate_limit]\n")
	env := func(k string) string {
		return map[string]string{"SIM_MODEL": "from-env", "PYTHONHASHSEED": "99"}[k]
	}
	cfg, err := ParseArgs([]string{"--config", path, "--port", "7100", "--served-model-name", "a", "b", "--time-to-first-token=25",
		"--failure-types", "server_error", "invalid_api_key", "--enable-kvcache"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "from-env" {
		t.Errorf("env must override YAML: model %q", cfg.Model)
	}
	if cfg.Port != 7100 || cfg.MaxNumSeqs != 9 {
		t.Errorf("flag over YAML: port %d, YAML kept: max-num-seqs %d", cfg.Port, cfg.MaxNumSeqs)
	}
	if strings.Join(cfg.ServedModelNames, ",") != "a,b" || cfg.DisplayModel() != "a" {
		t.Errorf("served names %v", cfg.ServedModelNames)
	}
	if cfg.InterTokenLatency.D() != 40*time.Millisecond || cfg.TimeToFirstToken.D() != 25*time.Millisecond {
		t.Errorf("integer durations are milliseconds: itl %v ttft %v", cfg.InterTokenLatency, cfg.TimeToFirstToken)
	}
	if strings.Join(cfg.FailureTypes, ",") != "server_error,invalid_api_key" || !cfg.EnableKVCache || cfg.HashSeed != "99" {
		t.Errorf("failure types %v kv %v seed %q", cfg.FailureTypes, cfg.EnableKVCache, cfg.HashSeed)
	}

	cfg, err = ParseArgs([]string{"--model", "flag-model", "--lora-modules", `{"name":"l1","path":"/p"}`, `{"name":"l2","path":"/q"}`}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "flag-model" || len(cfg.LoraModules) != 2 || cfg.LoraModules[1].Name != "l2" {
		t.Errorf("model %q loras %+v", cfg.Model, cfg.LoraModules)
	}
}

func TestParseArgsRejectsInvalid(t *testing.T) {
	for _, args := range [][]string{
		{},                                   // no model
		{"--model", "m", "--mode", "poetry"}, // bad mode
		{"--model", "m", "--block-size", "20"},
		{"--model", "m", "--time-to-first-token", "100ms", "--time-to-first-token-std-dev", "50ms"},
		{"--model", "m", "--time-factor-under-load", "0.5"},
		{"--model", "m", "--failure-types", "meteor"},
		{"--model", "m", "--latency-profile", "b200"},
		{"--model", "m", "--inter-token-latency", "soon"},
		{"--model", "m", "--no-such-flag"},
		{"--model", "m", "stray"},
	} {
		if _, err := ParseArgs(args, noEnv); err == nil {
			t.Errorf("ParseArgs(%q) accepted", args)
		}
	}
}

func TestCommandHelpListsUpstreamFlags(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--max-num-seqs", "--served-model-name", "--time-to-first-token", "--kv-cache-size",
		"--latency-calculator", "--failure-injection-rate", "--enable-kvcache", "--config"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help lacks %s", flag)
		}
	}
}
