package sim

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
)

// multiValueFlags take several space-separated values, as in vLLM and upstream
// (--served-model-name a b --port 8000): every following argument up to the next "--" flag.
// pflag cannot express that, so they are cut out of the arguments before pflag parses them.
var multiValueFlags = []string{"served-model-name", "lora-modules", "failure-types"}

// NewCommand returns `stackd sim`, whose flags are the upstream simulator's.
func NewCommand() *cobra.Command {
	cfg := DefaultConfig()
	cmd := &cobra.Command{
		Use:   "sim --model NAME [flags]",
		Short: "vLLM-compatible inference simulator (llm-d-inference-sim flags and metrics)",
		Long: "sim serves the OpenAI API of a simulated vLLM engine: chat and text completions (streamed or not),\n" +
			"/v1/models, /tokenize, /health, /health/ready and vllm:* Prometheus metrics on /metrics, with\n" +
			"max-num-seqs queueing, a latency model and a prefix-caching KV cache. Flags and --config YAML keys\n" +
			"are those of llm-d-inference-sim; values are taken from flags, then env (SIM_MODEL, PYTHONHASHSEED),\n" +
			"then the YAML file, then defaults.",
		Example: "  stackd sim --model phi-4-mini --port 5000 --max-num-seqs 5 --latency-profile auto\n" +
			"  stackd sim --config /config/config.yaml\n" +
			"  stackd sim --model m --served-model-name a b --time-to-first-token 100ms --inter-token-latency 15ms",
		// Flags are parsed by ParseArgs so multi-value flags work as upstream's do.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "-h") || slices.Contains(args, "--help") {
				return cmd.Help()
			}
			cfg, err := ParseArgs(args, os.Getenv)
			if err != nil {
				return err
			}
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			return Run(ctx, cfg, os.Getenv, func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) })
		},
	}
	registerFlags(cmd.Flags(), &cfg)
	return cmd
}

// Run serves data-parallel-size simulators on consecutive ports until ctx ends.
func Run(ctx context.Context, cfg Config, getenv func(string) string, logf func(string)) error {
	g, ctx := errgroup.WithContext(ctx)
	for rank := 0; rank < cfg.DataParallelSize; rank++ {
		c := cfg
		c.Port = cfg.Port + rank
		s, err := New(c, getenv)
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("", strconv.Itoa(c.Port))
		logf(fmt.Sprintf("sim: serving model %q on %s (max-num-seqs %d, kv cache %v)", c.DisplayModel(), addr, c.MaxNumSeqs, c.EnableKVCache))
		g.Go(func() error { return s.ListenAndServe(ctx, addr) })
	}
	return g.Wait()
}

func registerFlags(f *pflag.FlagSet, c *Config) {
	f.String("config", "", "path to a YAML file with the same keys as the flags")
	f.IntVar(&c.Port, "port", c.Port, "HTTP port")
	f.StringVar(&c.Model, "model", c.Model, "base model name (or env SIM_MODEL)")
	f.StringSlice("served-model-name", nil, "space-separated model names served by the API; the first is used in responses and metrics")
	f.StringVar(&c.Mode, "mode", c.Mode, "response text: random (sentence bank) or echo (last user message / prompt)")
	f.IntVar(&c.MaxNumSeqs, "max-num-seqs", c.MaxNumSeqs, "requests processed concurrently; the rest wait")
	f.IntVar(&c.MaxWaitingQueueLength, "max-waiting-queue-length", c.MaxWaitingQueueLength, "waiting queue capacity; a full queue answers 429")
	f.IntVar(&c.MaxModelLen, "max-model-len", c.MaxModelLen, "context window in tokens (prompt plus completion)")
	f.IntVar(&c.MaxLoras, "max-loras", c.MaxLoras, "LoRA adapters loaded at once")
	f.IntVar(&c.MaxCPULoras, "max-cpu-loras", c.MaxCPULoras, "LoRA adapters kept in CPU memory (default max-loras)")
	f.StringSlice("lora-modules", nil, `space-separated JSON LoRA adapters: '{"name":"a","path":"/p"}'`)
	f.IntVar(&c.MaxRequestBodySizeMB, "max-request-body-size-mb", c.MaxRequestBodySizeMB, "largest request body in MiB (1..512)")
	f.IntVar(&c.DataParallelSize, "data-parallel-size", c.DataParallelSize, "simulators to run on port, port+1, ... (1..8)")
	f.StringVar(&c.LatencyCalculator, "latency-calculator", c.LatencyCalculator, "constant or per-token; empty chooses by which knobs are set")
	for _, d := range []struct {
		p    *Duration
		name string
		help string
	}{
		{&c.TimeToFirstToken, "time-to-first-token", "time to first token (constant calculator)"},
		{&c.TimeToFirstTokenStdDev, "time-to-first-token-std-dev", "standard deviation of time-to-first-token (at most 30%)"},
		{&c.InterTokenLatency, "inter-token-latency", "time between generated tokens"},
		{&c.InterTokenLatencyStdDev, "inter-token-latency-std-dev", "standard deviation of inter-token-latency (at most 30%)"},
		{&c.PrefillOverhead, "prefill-overhead", "fixed prefill time (per-token calculator)"},
		{&c.PrefillTimePerToken, "prefill-time-per-token", "prefill time per uncached prompt token (per-token calculator)"},
		{&c.PrefillTimeStdDev, "prefill-time-std-dev", "standard deviation of the prefill time"},
		{&c.KVCacheTransferLatency, "kv-cache-transfer-latency", "KV transfer time of P/D decode requests (constant calculator)"},
		{&c.KVCacheTransferLatencyStdDev, "kv-cache-transfer-latency-std-dev", "standard deviation of kv-cache-transfer-latency"},
		{&c.KVCacheTransferTimePerToken, "kv-cache-transfer-time-per-token", "KV transfer time per prompt token (per-token calculator)"},
		{&c.KVCacheTransferTimeStdDev, "kv-cache-transfer-time-std-dev", "standard deviation of the KV transfer time"},
		{&c.StartupDuration, "startup-duration", "time /health/ready answers 503 after start"},
	} {
		f.Var(d.p, d.name, d.help+` (Go duration such as "100ms"; bare integers are milliseconds)`)
	}
	f.Float64Var(&c.TimeFactorUnderLoad, "time-factor-under-load", c.TimeFactorUnderLoad, "latency multiplier reached at max-num-seqs running requests (>= 1)")
	f.StringVar(&c.LatencyProfile, "latency-profile", c.LatencyProfile, "preset latency knobs: "+strings.Join(ProfileNames(), ", ")+" (sandbox extension)")
	f.Int64Var(&c.Seed, "seed", c.Seed, "random seed (default: start time in ns)")
	f.IntVar(&c.MaxToolCallIntegerParam, "max-tool-call-integer-param", c.MaxToolCallIntegerParam, "largest generated integer tool argument")
	f.IntVar(&c.MinToolCallIntegerParam, "min-tool-call-integer-param", c.MinToolCallIntegerParam, "smallest generated integer tool argument")
	f.Float64Var(&c.MaxToolCallNumberParam, "max-tool-call-number-param", c.MaxToolCallNumberParam, "largest generated number tool argument")
	f.Float64Var(&c.MinToolCallNumberParam, "min-tool-call-number-param", c.MinToolCallNumberParam, "smallest generated number tool argument")
	f.IntVar(&c.MaxToolCallArrayParamLength, "max-tool-call-array-param-length", c.MaxToolCallArrayParamLength, "longest generated array tool argument")
	f.IntVar(&c.MinToolCallArrayParamLength, "min-tool-call-array-param-length", c.MinToolCallArrayParamLength, "shortest generated array tool argument")
	f.IntVar(&c.ToolCallNotRequiredParamProbability, "tool-call-not-required-param-probability", c.ToolCallNotRequiredParamProbability, "percent chance to fill an optional tool parameter")
	f.IntVar(&c.ObjectToolCallNotRequiredParamProbability, "object-tool-call-not-required-field-probability", c.ObjectToolCallNotRequiredParamProbability, "percent chance to fill an optional field of an object argument")
	f.BoolVar(&c.EnableKVCache, "enable-kvcache", c.EnableKVCache, "simulate the KV cache and prefix caching")
	f.IntVar(&c.KVCacheSize, "kv-cache-size", c.KVCacheSize, "KV cache capacity in blocks")
	f.IntVar(&c.BlockSize, "block-size", c.BlockSize, "tokens per block: 8, 16, 32, 64 or 128")
	f.StringVar(&c.HashSeed, "hash-seed", c.HashSeed, "block hash seed (or env PYTHONHASHSEED)")
	f.Float64Var(&c.GlobalCacheHitThreshold, "global-cache-hit-threshold", c.GlobalCacheHitThreshold, "default cache_hit_threshold in [0, 1]; 0 disables")
	f.StringVar(&c.ZMQEndpoint, "zmq-endpoint", c.ZMQEndpoint, "KV event endpoint (accepted; events are not published)")
	f.IntVar(&c.ZMQMaxConnectAttempts, "zmq-max-connect-attempts", c.ZMQMaxConnectAttempts, "accepted for compatibility")
	f.IntVar(&c.EventBatchSize, "event-batch-size", c.EventBatchSize, "accepted for compatibility")
	f.IntVar(&c.FailureInjectionRate, "failure-injection-rate", c.FailureInjectionRate, "percentage of requests that fail on purpose (0..100)")
	f.StringSlice("failure-types", nil, "space-separated failure types: "+strings.Join(allFailureTypes, ", ")+" (default all)")
	f.BoolVar(&c.EnableRequestIDHeaders, "enable-request-id-headers", c.EnableRequestIDHeaders, "use and echo X-Request-Id")
	f.BoolVar(&c.EnableSleepMode, "enable-sleep-mode", c.EnableSleepMode, "honour /sleep and /wake_up (also needs VLLM_SERVER_DEV_MODE=1)")
	f.BoolVar(&c.ForceDummyTokenizer, "force-dummy-tokenizer", c.ForceDummyTokenizer, "accepted; the dummy tokenizer is the only one")
	f.StringVar(&c.RenderURL, "render-url", c.RenderURL, "accepted for compatibility; unused offline")
	// vLLM flags accepted and ignored so a vLLM command line works unchanged.
	f.Bool("enable-prefix-caching", false, "ignored (vLLM compatibility)")
	f.Bool("no-enable-prefix-caching", false, "ignored (vLLM compatibility)")
	f.IntVar(&c.TensorParallelSize, "tensor-parallel-size", 0, "ignored (vLLM compatibility)")
	f.BoolVar(&c.EnforceEager, "enforce-eager", false, "ignored (vLLM compatibility)")
	f.StringVar(&c.GPUMemoryUtilization, "gpu-memory-utilization", "", "ignored (vLLM compatibility)")
	f.StringVar(&c.Tokenizer, "tokenizer", "", "ignored (vLLM compatibility)")
}

// extractMultiValue removes the multi-value flags from args and returns their values.
func extractMultiValue(args []string) (rest []string, values map[string][]string) {
	values = map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		matched := false
		for _, name := range multiValueFlags {
			if a == "--"+name {
				vals := []string{}
				for i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
					i++
					if args[i] != "" {
						vals = append(vals, args[i])
					}
				}
				values[name] = vals
				matched = true
				break
			}
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				values[name] = strings.Fields(v)
				matched = true
				break
			}
		}
		if !matched {
			rest = append(rest, a)
		}
	}
	return rest, values
}

// ParseArgs builds the effective config: defaults, then the YAML file, then the environment,
// then the command line. A latency profile fills only the knobs neither source set.
func ParseArgs(args []string, getenv func(string) string) (Config, error) {
	rest, multi := extractMultiValue(args)
	probe := pflag.NewFlagSet("sim", pflag.ContinueOnError)
	probe.SetOutput(discard{})
	var flagCfg Config
	registerFlags(probe, &flagCfg)
	if err := probe.Parse(rest); err != nil {
		return Config{}, fmt.Errorf("sim flags: %w", err)
	}
	if probe.NArg() > 0 {
		return Config{}, fmt.Errorf("sim flags: unexpected argument %q", probe.Arg(0))
	}

	cfg := DefaultConfig()
	explicit := map[string]bool{}
	if path, _ := probe.GetString("config"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read sim config: %w", err)
		}
		if err := cfg.loadYAML(data); err != nil {
			return Config{}, fmt.Errorf("sim config %s: %w", path, err)
		}
		keys, err := yamlKeys(data)
		if err != nil {
			return Config{}, fmt.Errorf("sim config %s: %w", path, err)
		}
		for _, k := range keys {
			explicit[k] = true
		}
	}
	if v := getenv("SIM_MODEL"); v != "" {
		cfg.Model = v
	}
	// Re-parse onto cfg so only flags given on the command line override the file and env.
	final := pflag.NewFlagSet("sim", pflag.ContinueOnError)
	final.SetOutput(discard{})
	registerFlags(final, &cfg)
	if err := final.Parse(rest); err != nil {
		return Config{}, fmt.Errorf("sim flags: %w", err)
	}
	final.Visit(func(f *pflag.Flag) { explicit[f.Name] = true })
	if v, ok := multi["served-model-name"]; ok {
		cfg.ServedModelNames = v
	}
	if v, ok := multi["failure-types"]; ok {
		cfg.FailureTypes = v
	}
	if v, ok := multi["lora-modules"]; ok {
		cfg.LoraModules = nil
		for _, s := range v {
			m, err := parseLoraModule([]byte(s))
			if err != nil {
				return Config{}, fmt.Errorf("sim flags: --lora-modules: %w", err)
			}
			cfg.LoraModules = append(cfg.LoraModules, m)
		}
	}
	if cfg.HashSeed == "" {
		cfg.HashSeed = getenv("PYTHONHASHSEED")
	}
	cfg.applyLatencyProfile(explicit)
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
