package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/inference-sandbox/sandbox/internal/openai"
)

// Tool calling as upstream simulates it: when a chat request declares tools, a choice may
// answer with calls to them instead of text. Arguments are random values that fit each
// function's JSON-schema parameters; finish_reason is tool_calls.

type toolMode uint8

const (
	toolsOff      toolMode = iota // no tools, or tool_choice "none"
	toolsAuto                     // zero or more calls
	toolsRequired                 // at least one call
	toolsForced                   // exactly one call of the named function
)

// toolDef is a declared function with its parameter schema decoded once per request.
type toolDef struct {
	name   string
	params map[string]any
}

// stringArguments are the values of generated string arguments.
var stringArguments = []string{"alpha", "Paris", "rainy", "forty-two", "blue", "weekly", "north", "draft", "kettle", "harbor"}

// parseTools decodes tools and tool_choice into j, rejecting what could not be generated
// later, so that a stream never has to fail half-way.
func parseTools(j *job, cfg *Config, tools []openai.Tool, choice json.RawMessage) *apiError {
	if len(tools) == 0 {
		return nil
	}
	j.toolMode = toolsAuto
	choice = bytes.TrimSpace(choice)
	if len(choice) > 0 && !bytes.Equal(choice, []byte("null")) {
		var mode string
		var forced struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(choice, &mode) == nil:
			switch mode {
			case "none":
				j.toolMode = toolsOff
				return nil
			case "auto":
			case "required":
				j.toolMode = toolsRequired
			default:
				return badRequest("tool_choice", "tool_choice must be none, auto, required or a function, got %q", mode)
			}
		case json.Unmarshal(choice, &forced) == nil && forced.Type == "function" && forced.Function.Name != "":
			j.toolMode = toolsForced
			j.forcedTool = forced.Function.Name
		default:
			return badRequest("tool_choice", "unsupported tool_choice %s", choice)
		}
	}
	for _, t := range tools {
		def := toolDef{name: t.Function.Name, params: map[string]any{}}
		if len(t.Function.Parameters) > 0 {
			if err := json.Unmarshal(t.Function.Parameters, &def.params); err != nil {
				return badRequest("tools", "parameters of tool %q are not a JSON object: %v", def.name, err)
			}
		}
		props, _ := def.params["properties"].(map[string]any)
		values := 0
		for name, p := range props {
			n, err := checkSchema(cfg, p, 0)
			if err != nil {
				return badRequest("tools", "tool %q parameter %q: %v", def.name, name, err)
			}
			values += n
		}
		if values > maxToolValues {
			return badRequest("tools", "tool %q could need %d generated values, more than %d", def.name, values, maxToolValues)
		}
		if j.toolMode != toolsForced || def.name == j.forcedTool {
			j.tools = append(j.tools, def)
		}
	}
	if j.toolMode == toolsForced && len(j.tools) == 0 {
		return badRequest("tool_choice", "tool with name '%s' requested in tool_choice but not found in the tools list", j.forcedTool)
	}
	return nil
}

// maxToolValues bounds the values one call's arguments may need, so that a schema of nested
// large arrays cannot make the simulator build gigabytes of JSON.
const maxToolValues = 10000

// checkSchema accepts the parameter schemas generateArgument can satisfy and returns the
// largest number of values one argument can need (saturating above maxToolValues).
func checkSchema(cfg *Config, p any, depth int) (int, error) {
	m, ok := p.(map[string]any)
	if !ok {
		return 0, fmt.Errorf("schema must be an object")
	}
	if depth > 32 {
		return 0, fmt.Errorf("schema nested too deeply")
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return 1, nil
	}
	switch m["type"] {
	case "string", "integer", "number", "boolean":
		return 1, nil
	case "array":
		lo, hi, err := itemBounds(m, cfg.MinToolCallArrayParamLength, cfg.MaxToolCallArrayParamLength)
		if err == nil && lo > hi {
			err = fmt.Errorf("minItems (%d) is greater than maxItems (%d)", lo, hi)
		}
		if err != nil {
			return 0, err
		}
		n, err := checkSchema(cfg, m["items"], depth+1)
		if hi > maxToolValues {
			return maxToolValues + 1, err
		}
		return min(max(hi, 1)*n, maxToolValues+1), err
	case "object":
		props, ok := m["properties"].(map[string]any)
		if !ok {
			return 0, fmt.Errorf("object parameters need properties")
		}
		total := 1
		for _, sub := range props {
			n, err := checkSchema(cfg, sub, depth+1)
			if err != nil {
				return 0, err
			}
			total = min(total+n, maxToolValues+1)
		}
		return total, nil
	default:
		return 0, fmt.Errorf("tool parameters of type %v are not supported", m["type"])
	}
}

// itemBounds reads minItems/maxItems, falling back to the configured lengths.
func itemBounds(m map[string]any, lo, hi int) (int, int, error) {
	for key, dst := range map[string]*int{"minItems": &lo, "maxItems": &hi} {
		if v, ok := m[key]; ok {
			f, ok := v.(float64)
			if !ok || f < 0 || f > 1e9 || f != float64(int(f)) {
				return 0, 0, fmt.Errorf("%s must be a non-negative integer", key)
			}
			*dst = int(f)
		}
	}
	return lo, hi, nil
}

func requiredSet(m map[string]any) map[string]bool {
	out := map[string]bool{}
	list, _ := m["required"].([]any)
	for _, r := range list {
		if s, ok := r.(string); ok {
			out[s] = true
		}
	}
	return out
}

// generateObject fills an object schema's properties: required ones always, others with
// the given percent probability.
func (s *Server) generateObject(m map[string]any, optionalPercent int) map[string]any {
	out := map[string]any{}
	props, _ := m["properties"].(map[string]any)
	required := requiredSet(m)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	slices.Sort(names) // map order must not decide which random value goes where
	for _, n := range names {
		if !required[n] && s.rand.IntN(100) >= optionalPercent {
			continue
		}
		out[n] = s.generateArgument(props[n])
	}
	return out
}

func (s *Server) generateArgument(p any) any {
	m, _ := p.(map[string]any)
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[s.rand.IntN(len(e))]
	}
	c := &s.cfg
	switch m["type"] {
	case "string":
		return stringArguments[s.rand.IntN(len(stringArguments))]
	case "integer":
		return c.MinToolCallIntegerParam + s.rand.IntN(c.MaxToolCallIntegerParam-c.MinToolCallIntegerParam+1)
	case "number":
		return c.MinToolCallNumberParam + s.rand.Float64()*(c.MaxToolCallNumberParam-c.MinToolCallNumberParam)
	case "boolean":
		return s.rand.IntN(2) == 1
	case "array":
		lo, hi, _ := itemBounds(m, c.MinToolCallArrayParamLength, c.MaxToolCallArrayParamLength)
		out := make([]any, lo+s.rand.IntN(hi-lo+1))
		for i := range out {
			out[i] = s.generateArgument(m["items"])
		}
		return out
	default: // object; checkSchema has ruled out anything else
		return s.generateObject(m, c.ObjectToolCallNotRequiredParamProbability)
	}
}

// toolCalls decides one choice's calls. The number of calls is random between the mode's
// minimum and the number of tools; each call picks a tool at random, repeats allowed.
func (s *Server) toolCalls(j *job) ([]openai.ToolCall, [][]string) {
	if j.toolMode == toolsOff || len(j.tools) == 0 {
		return nil, nil
	}
	minCalls := 0
	if j.toolMode != toolsAuto {
		minCalls = 1
	}
	n := minCalls
	if len(j.tools) > minCalls {
		n = minCalls + s.rand.IntN(len(j.tools)-minCalls+1)
	}
	calls := make([]openai.ToolCall, n)
	argTokens := make([][]string, n)
	for i := range calls {
		def := j.tools[s.rand.IntN(len(j.tools))]
		args, _ := json.Marshal(s.generateObject(def.params, s.cfg.ToolCallNotRequiredParamProbability))
		id := make([]byte, 0, 24)
		id = append(id, "chatcmpl-tool-"...)
		for k := 0; k < 10; k++ {
			id = strconv.AppendInt(id, int64(s.rand.IntN(10)), 10)
		}
		calls[i] = openai.ToolCall{Index: &i, ID: string(id), Type: "function",
			Function: openai.FunctionCall{Name: def.name, Arguments: string(args)}}
		argTokens[i] = splitTokens(nil, string(args))
	}
	return calls, argTokens
}

// toolCallTokens is the completion-token count upstream reports for calls: three per call
// (id, type, name) plus the argument tokens.
func toolCallTokens(argTokens [][]string) int {
	n := 0
	for _, a := range argTokens {
		n += 3 + len(a)
	}
	return n
}
