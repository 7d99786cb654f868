package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/inference-sandbox/sandbox/internal/components/sim/kvcache"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// apiError is an error that reaches the client as an OpenAI envelope with this status.
type apiError struct {
	status  int
	message string
	param   string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.message) }

func (e *apiError) envelope() openai.ErrorEnvelope {
	return openai.NewStatusError(e.status, e.message, e.param)
}

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf(format, args...), param: param}
}

// Errors with upstream's wording (facts §1.5).
var (
	errQueueFullAPI = &apiError{status: http.StatusTooManyRequests, message: "Failed to enqueue request, waiting requests queue is full"}
	errShutdownAPI  = &apiError{status: http.StatusServiceUnavailable, message: "server is shutting down"}
	errKVCapacity   = &apiError{status: http.StatusInternalServerError, message: kvcache.ErrCapacity.Error()}
)

// prompt is one prompt of a request after tokenisation.
type prompt struct {
	text      string
	numTokens int
	ids       []uint32 // only when the KV cache or /tokenize needs them
	blocks    []uint64 // chained block hashes, when the KV cache is on
	echo      string   // text returned in echo mode
}

// jobPool recycles jobs: a job is large (it carries inline buffers) and lives exactly as
// long as its handler.
var jobPool = sync.Pool{New: func() any { return new(job) }}

func getJob() *job { return jobPool.Get().(*job) }

func putJob(j *job) {
	*j = job{}
	jobPool.Put(j)
}

// job is one parsed, validated request: len(prompts)×n sub-requests.
type job struct {
	id             string
	created        int64
	model          string // the displayed model name
	chat           bool
	stream         bool
	includeUsage   bool
	prompts        []prompt
	n              int
	maxTokens      int // -1: not given
	ignoreEOS      bool
	cacheHitMin    float64 // -1: no threshold
	remoteDecode   bool
	remotePrefill  bool
	forceCacheMiss bool   // X-Cache-Threshold-Finish-Reason: true
	requestID      string // echoed in X-Request-Id when enabled
	tools          []toolDef
	toolMode       toolMode
	forcedTool     string

	// Inline storage for the common single-choice request, so that it needs no separate
	// allocations for its prompt, result, token list and usage details.
	onePrompt [1]prompt
	oneResult [1]subResult
	tokenBuf  [32]string
	details   openai.PromptTokensDetails
}

func (j *job) subRequests() int { return len(j.prompts) * j.n }

// decodeBody parses a request body; any JSON problem is upstream's 400.
func decodeBody(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("", "Failed to read and parse request body, %v", err)
	}
	return nil
}

func optInt(v *int64) (int, bool) {
	if v == nil {
		return -1, false
	}
	return int(min(max(*v, -1<<31), 1<<31-1)), true
}

// commonFields validates the fields chat and completions share.
func commonFields(j *job, n, maxTokens *int64, maxParam string, ignoreEOS bool, threshold *float64, kv *openai.KVTransferParams) *apiError {
	j.n = 1
	if n != nil {
		if *n <= 0 {
			return badRequest("n", "n must be greater than 0")
		}
		j.n = int(min(*n, 1<<20))
	}
	j.maxTokens = -1
	if v, ok := optInt(maxTokens); ok {
		if v <= 0 {
			return badRequest(maxParam, "%s must be at least 1, got %d", maxParam, *maxTokens)
		}
		j.maxTokens = v
	} else if ignoreEOS {
		return badRequest("ignore_eos", "ignore_eos requires max_tokens or max_completion_tokens")
	}
	j.ignoreEOS = ignoreEOS
	j.cacheHitMin = -1
	if threshold != nil {
		if *threshold < 0 || *threshold > 1 {
			return badRequest("cache_hit_threshold", "cache_hit_threshold must be between 0 and 1, got %v", *threshold)
		}
		j.cacheHitMin = *threshold
	}
	if kv != nil {
		j.remoteDecode, j.remotePrefill = kv.DoRemoteDecode, kv.DoRemotePrefill
		if j.remoteDecode && j.stream {
			return badRequest("stream", "stream is not supported together with do_remote_decode")
		}
	}
	return nil
}

// chatJob parses and validates a chat completion request body into j and returns the
// requested model.
func (s *Server) chatJob(body []byte, j *job) (string, *apiError) {
	var req openai.ChatCompletionRequest
	if err := openai.DecodeChatCompletionRequest(body, &req); err != nil {
		return "", badRequest("", "Failed to read and parse request body, %v", err)
	}
	j.chat, j.stream, j.includeUsage = true, req.Stream, req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	maxParam := "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxParam = "max_completion_tokens"
	}
	if err := commonFields(j, req.N, req.MaxOutputTokens(), maxParam, req.IgnoreEOS, req.CacheHitThreshold, req.KVTransferParams); err != nil {
		return "", err
	}
	if len(req.Messages) == 0 {
		return "", badRequest("messages", "messages must not be empty")
	}
	if err := parseTools(j, &s.cfg, req.Tools, req.ToolChoice); err != nil {
		return "", err
	}
	var b strings.Builder
	for i := range req.Messages {
		m := &req.Messages[i]
		b.WriteString("### ")
		b.WriteString(m.Role)
		b.WriteString(": ")
		b.WriteString(m.Content.PlainText())
		b.WriteByte('\n')
	}
	p := prompt{text: b.String()}
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			p.echo = req.Messages[i].Content.PlainText()
			break
		}
	}
	j.onePrompt[0] = p
	j.prompts = j.onePrompt[:]
	return req.Model, nil
}

// completionJob parses and validates a text completion request body into j and returns the
// requested model.
func (s *Server) completionJob(body []byte, j *job) (string, *apiError) {
	var req openai.CompletionRequest
	if err := decodeBody(body, &req); err != nil {
		return "", err
	}
	j.stream, j.includeUsage = req.Stream, req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	if err := commonFields(j, req.N, req.MaxTokens, "max_tokens", req.IgnoreEOS, req.CacheHitThreshold, req.KVTransferParams); err != nil {
		return "", err
	}
	if req.Prompt.Len() == 0 {
		return "", badRequest("prompt", "prompt must not be empty")
	}
	for _, t := range req.Prompt.Texts {
		if t == "" {
			return "", badRequest("prompt", "prompt must not contain empty strings")
		}
		j.prompts = append(j.prompts, prompt{text: t, echo: t})
	}
	for _, ids := range req.Prompt.Tokens {
		if len(ids) == 0 {
			return "", badRequest("prompt", "prompt must not contain empty token lists")
		}
		// Token-id prompts have no text; their ids are used as given and echo mode returns
		// the ids rendered as words.
		p := prompt{numTokens: len(ids), ids: make([]uint32, len(ids))}
		var b strings.Builder
		for k, id := range ids {
			p.ids[k] = uint32(id)
			fmt.Fprintf(&b, "%d ", id)
		}
		p.echo = b.String()
		j.prompts = append(j.prompts, p)
	}
	return req.Model, nil
}

// tokenize fills token counts (and ids/blocks when needed) and checks the context window.
func (s *Server) tokenize(j *job) *apiError {
	for i := range j.prompts {
		p := &j.prompts[i]
		if p.ids == nil {
			if s.kv != nil {
				p.ids = tokenIDs(make([]uint32, 0, len(p.text)/4+1), p.text)
				p.numTokens = len(p.ids)
			} else {
				p.numTokens = countTokens(p.text)
			}
		}
		if s.kv != nil {
			root := kvcache.RootHash(s.cfg.HashSeed, j.model)
			p.blocks = kvcache.AppendBlockHashes(nil, root, p.ids, s.cfg.BlockSize)
		}
		completion := max(j.maxTokens, 0)
		if p.numTokens+completion > s.cfg.MaxModelLen {
			param := "messages"
			if !j.chat {
				param = "prompt"
			}
			return badRequest(param, "This model's maximum context length is %d tokens. However, you requested %d tokens "+
				"(%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				s.cfg.MaxModelLen, p.numTokens+completion, p.numTokens, completion)
		}
	}
	return nil
}
