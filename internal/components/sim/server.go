package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inference-sandbox/sandbox/internal/components/sim/kvcache"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

// Server is one simulated vLLM engine with its OpenAI HTTP API.
type Server struct {
	cfg     Config
	display string
	served  map[string]bool
	started time.Time
	rand    *lockedRand
	// lat is replaced as a whole by POST /admin/config; requests read it once.
	lat     atomic.Pointer[latencyModel]
	sched   *scheduler
	kv      *kvcache.Cache // nil when --enable-kvcache is off
	metrics *metrics
	mux     *http.ServeMux
	maxBody int64
	// extraHeaders are the x-inference-* headers from POD_NAME/POD_NAMESPACE, set on every
	// response so tests and dashboards can see which pod answered.
	extraHeaders map[string][]string
	shutting     atomic.Bool
	sleeping     atomic.Bool
	devMode      bool
	loras        loraState
	failures     failureInjector
	adminMu      sync.Mutex // serialises /admin/config read-modify-write
}

// New builds a simulator from a validated config. getenv reads POD_NAME, POD_NAMESPACE and
// VLLM_SERVER_DEV_MODE (os.Getenv in production; tests pass their own).
func New(cfg Config, getenv func(string) string) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid simulator config: %w", err)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	m, err := newMetrics(&cfg)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		display:      cfg.DisplayModel(),
		served:       map[string]bool{},
		started:      time.Now(),
		rand:         newLockedRand(cfg.Seed),
		metrics:      m,
		maxBody:      int64(cfg.MaxRequestBodySizeMB) << 20,
		extraHeaders: map[string][]string{},
		devMode:      getenv("VLLM_SERVER_DEV_MODE") == "1",
	}
	s.lat.Store(newLatencyModel(cfg, s.rand))
	s.sched = newScheduler(cfg.MaxNumSeqs, cfg.MaxWaitingQueueLength, m)
	if cfg.EnableKVCache {
		s.kv = kvcache.New(cfg.KVCacheSize, m.setKVUsage)
	}
	names := cfg.ServedModelNames
	if len(names) == 0 {
		names = []string{cfg.Model}
	}
	for _, n := range names {
		s.served[n] = true
	}
	s.loras.init(m)
	for _, l := range cfg.LoraModules {
		s.loras.load(l)
	}
	s.failures.set(cfg.FailureInjectionRate, cfg.FailureTypes)
	if pod := getenv("POD_NAME"); pod != "" {
		s.extraHeaders["X-Inference-Pod"] = []string{pod}
		s.extraHeaders["X-Inference-Port"] = []string{strconv.Itoa(cfg.Port)}
	}
	if ns := getenv("POD_NAMESPACE"); ns != "" {
		s.extraHeaders["X-Inference-Namespace"] = []string{ns}
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	mux.HandleFunc("POST /v1/completions", s.handleCompletion)
	mux.HandleFunc("GET /v1/models", s.handleModels)
	mux.HandleFunc("POST /tokenize", s.handleTokenize)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /health/ready", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /v1/load_lora_adapter", s.handleLoadLora)
	mux.HandleFunc("POST /v1/unload_lora_adapter", s.handleUnloadLora)
	mux.HandleFunc("POST /sleep", s.handleSleep(true))
	mux.HandleFunc("POST /wake_up", s.handleSleep(false))
	mux.HandleFunc("GET /is_sleeping", s.handleIsSleeping)
	mux.HandleFunc("GET /admin/config", s.handleGetConfig)
	mux.HandleFunc("POST /admin/config", s.handleSetConfig)
	s.mux = mux
}

// ServeHTTP makes the simulator an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range s.extraHeaders {
		h[k] = v
	}
	// The two inference routes skip the mux's pattern matching: they are nearly all traffic.
	if r.Method == http.MethodPost {
		switch r.URL.Path {
		case "/v1/chat/completions":
			s.handleChat(w, r)
			return
		case "/v1/completions":
			s.handleCompletion(w, r)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// StartShutdown makes new inference requests fail with upstream's 503 while in-flight ones
// finish; http.Server.Shutdown does the draining.
func (s *Server) StartShutdown() { s.shutting.Store(true) }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// readBody reads the request body into a pooled buffer, enforcing the body size limit.
func (s *Server) readBody(r *http.Request, buf *[]byte) *apiError {
	if r.ContentLength > s.maxBody {
		return &apiError{status: http.StatusRequestEntityTooLarge, message: "request body too large"}
	}
	b := (*buf)[:0]
	if r.ContentLength > 0 && int64(cap(b)) < r.ContentLength {
		b = make([]byte, 0, r.ContentLength)
	}
	lr := io.LimitedReader{R: r.Body, N: s.maxBody + 1}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			return badRequest("", "Failed to read and parse request body, %v", err)
		}
	}
	*buf = b
	if int64(len(b)) > s.maxBody {
		return &apiError{status: http.StatusRequestEntityTooLarge, message: "request body too large"}
	}
	return nil
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	openai.WriteError(w, e.status, "", e.envelope())
}

var contentTypeJSON = []string{"application/json"}

type cachedDate struct {
	unix  int64
	value []string
}

var dateCache atomic.Pointer[cachedDate]

// httpDate returns the Date header for now, formatted once per second rather than by
// net/http on every response.
func httpDate(now time.Time) []string {
	sec := now.Unix()
	if c := dateCache.Load(); c != nil && c.unix == sec {
		return c.value
	}
	c := &cachedDate{unix: sec, value: []string{now.UTC().Format(http.TimeFormat)}}
	dateCache.Store(c)
	return c.value
}

// writeJSON writes a pre-encoded JSON body. Content-Length is left to net/http, which sets
// it for bodies that fit its buffer, saving two allocations per request.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// resolveModel maps a requested model to the displayed name: the first served name for the
// base model (whichever alias was used), the adapter name for a LoRA.
func (s *Server) resolveModel(name string) (string, *apiError) {
	if s.served[name] {
		return s.display, nil
	}
	if s.loras.isLoaded(name) {
		return name, nil
	}
	return "", &apiError{status: http.StatusNotFound, message: fmt.Sprintf("The model `%s` does not exist.", name), param: "model"}
}

// prepare runs the checks every inference request goes through, in upstream's order:
// shutdown, synthetic errors, failure injection, model, context window, queue capacity.
func (s *Server) prepare(r *http.Request, j *job, model string) *apiError {
	if s.shutting.Load() {
		return errShutdownAPI
	}
	if v := r.Header.Get("X-Return-Error"); v != "" {
		code, err := strconv.Atoi(v)
		if err != nil || code < 100 || code > 999 {
			return badRequest("", "invalid X-Return-Error header value %q", v)
		}
		return &apiError{status: code, message: fmt.Sprintf("error %d requested by the X-Return-Error header", code)}
	}
	if e := s.failures.maybeFail(s.rand, model, s.cfg.MaxModelLen); e != nil {
		return e
	}
	display, e := s.resolveModel(model)
	if e != nil {
		return e
	}
	j.model = display
	if e := s.tokenize(j); e != nil {
		return e
	}
	// More sub-requests than slots plus queue places could never all be admitted.
	if j.subRequests() > s.cfg.MaxNumSeqs+s.cfg.MaxWaitingQueueLength {
		return errQueueFullAPI
	}
	j.forceCacheMiss = r.Header.Get("X-Cache-Threshold-Finish-Reason") == "true"
	j.created = time.Now().Unix()
	reqID := ""
	if s.cfg.EnableRequestIDHeaders {
		reqID = r.Header.Get("X-Request-Id")
	}
	if reqID == "" {
		reqID = s.rand.uuid()
	}
	if s.cfg.EnableRequestIDHeaders {
		j.requestID = reqID // echoed by serveJob
	}
	if j.chat {
		j.id = "chatcmpl-" + reqID
	} else {
		j.id = "cmpl-" + reqID
	}
	return nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.handleInference(w, r, s.chatJob)
}

func (s *Server) handleCompletion(w http.ResponseWriter, r *http.Request) {
	s.handleInference(w, r, s.completionJob)
}

// handleInference reads the body into a pooled buffer, parses it with parse, runs the
// common checks and serves the job.
func (s *Server) handleInference(w http.ResponseWriter, r *http.Request, parse func([]byte, *job) (string, *apiError)) {
	buf := getBuf()
	defer putBuf(buf)
	if e := s.readBody(r, buf); e != nil {
		s.writeError(w, e)
		return
	}
	j := getJob()
	defer putJob(j)
	model, e := parse(*buf, j)
	if e == nil {
		e = s.prepare(r, j, model)
	}
	if e != nil {
		s.writeError(w, e)
		return
	}
	s.serveJob(w, r, j, buf)
}

// serveJob runs a prepared job and writes its response.
func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, j *job, buf *[]byte) {
	if j.requestID != "" {
		w.Header()["X-Request-Id"] = []string{j.requestID}
	}
	loraDone := s.loras.track(j.model)
	defer loraDone()
	if j.stream {
		st := newStreamSink(w, j)
		results, err := s.runJob(r.Context(), j, st)
		s.observeJob(j, results, err)
		st.end(j, results, err, s)
		return
	}
	results, err := s.runJob(r.Context(), j, discardSink{})
	s.observeJob(j, results, err)
	if err != nil {
		var e *apiError
		if errors.As(err, &e) {
			s.writeError(w, e)
		}
		// Otherwise the client has gone; there is no one to answer.
		return
	}
	*buf = s.appendResponse((*buf)[:0], j, results)
	w.Header()["Date"] = httpDate(time.Now())
	writeJSON(w, http.StatusOK, *buf)
}

// observeJob records the per-request (not per-choice) metric: the longest generation among
// the request's choices, vLLM's max_num_generation_tokens.
func (s *Server) observeJob(j *job, results []subResult, err error) {
	if err != nil {
		return
	}
	longest := 0
	for i := range results {
		longest = max(longest, results[i].generated)
	}
	s.metrics.forModelFast(j.model).maxGenTokens.Observe(float64(longest))
}

// discardSink is the sink of non-streaming requests, which answer from the results.
type discardSink struct{}

func (discardSink) token(int, string) error                       { return nil }
func (discardSink) toolDelta(int, openai.ToolCall, *string) error { return nil }
func (discardSink) finish(int, string, int) error                 { return nil }

var kvTransferPlaceholder = func() *openai.KVTransferParams {
	dummy := "DUMMY_ID"
	host := "DUMMY"
	return &openai.KVTransferParams{DoRemotePrefill: true, RemoteEngineID: &dummy, RemoteBlockIDs: []any{"DUMMY_ID"},
		RemoteHost: &host, RemotePort: 1234, TPSize: 1}
}()

// appendResponse encodes the non-streaming response.
func (s *Server) appendResponse(b []byte, j *job, results []subResult) []byte {
	var kv *openai.KVTransferParams
	if j.remoteDecode {
		kv = kvTransferPlaceholder
	}
	usage := j.usage(results)
	if j.chat {
		var one [1]openai.ChatCompletionChoice
		choices := one[:]
		if len(results) > 1 {
			choices = make([]openai.ChatCompletionChoice, len(results))
		}
		resp := openai.ChatCompletion{ID: j.id, Object: openai.ObjectChatCompletion, Created: j.created, Model: j.model,
			Choices: choices, Usage: &usage, KVTransferParams: kv}
		for i := range results {
			resp.Choices[i] = openai.ChatCompletionChoice{Index: i, FinishReason: results[i].finishReason,
				Message: openai.AssistantMessage{Role: "assistant", Content: joinTokens(results[i].tokens), ToolCalls: results[i].toolCalls}}
		}
		return resp.AppendJSON(b)
	}
	resp := openai.Completion{ID: j.id, Object: openai.ObjectTextCompletion, Created: j.created, Model: j.model,
		Choices: make([]openai.CompletionChoice, len(results)), Usage: &usage, KVTransferParams: kv}
	for i := range results {
		reason := results[i].finishReason
		resp.Choices[i] = openai.CompletionChoice{Index: i, FinishReason: &reason, Text: joinTokens(results[i].tokens)}
	}
	return resp.AppendJSON(b)
}

// ListenAndServe serves on 127.0.0.1:port-style addr until ctx ends, then drains.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	s.StartShutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down %s: %w", addr, err)
	}
	return nil
}
