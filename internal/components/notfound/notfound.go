// Package notfound is the backend of every gateway's catch-all route: whatever no model route
// matched gets an OpenAI-shaped error instead of an empty 404. It reproduces the two fallback
// routes of upstream production-stack's modelharness chart byte for byte
// (../shared/facts/upstream-production-stack.md §1.7):
//
//   - X-Gateway-Model-Name present (BBR found a model, but no route serves it) → 404
//     model_not_found, x-kaito-error-source: gateway, x-kaito-requested-model: <model>;
//   - otherwise (BBR found no model in the body) → 400 invalid_request_body,
//     x-kaito-error-source: bbr.
package notfound

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

const (
	modelHeader          = "X-Gateway-Model-Name"
	requestedModelHeader = "x-kaito-requested-model"
)

// Upstream's bodies are inline YAML block scalars, hence the trailing newline.
var (
	modelNotFound = body("The model does not exist.", "model_not_found")
	noModel       = body(`The request body did not specify a model; the "model" field is required.`, "invalid_request_body")
)

func body(message, code string) []byte {
	env := openai.NewError(message, "invalid_request_error", code)
	param := "model"
	env.Error.Param = &param
	b, err := json.Marshal(env)
	if err != nil {
		panic(err) // strings only
	}
	return append(b, '\n')
}

// Handler answers every request with the catch-all error that fits it.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		status, b := http.StatusBadRequest, noModel
		if model, present := r.Header[modelHeader]; present {
			status, b = http.StatusNotFound, modelNotFound
			h.Set(openai.ErrorSourceHeader, "gateway")
			// Envoy drops a header whose formatted value is empty; so do we.
			if len(model) > 0 && model[0] != "" {
				h.Set(requestedModelHeader, model[0])
			}
		} else {
			h.Set(openai.ErrorSourceHeader, "bbr")
		}
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
	})
}

// NewCommand returns `stackd notfound`.
func NewCommand() *cobra.Command {
	var bind string
	port := 8080
	cmd := &cobra.Command{
		Use:   "notfound",
		Short: "Catch-all backend: OpenAI-shaped 404 model_not_found / 400 invalid_request_body",
		Example: `  # behind a Service port 80 → 8080, as the offline modelharness deploys it
  stackd notfound --port 8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // cancelled on SIGINT/SIGTERM by stackd\'s main
			ln, err := extproc.Listen(ctx, bind, port, "notfound")
			if err != nil {
				return err
			}
			return Serve(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&bind, "bind-address", "", "address to listen on (empty: all interfaces)")
	// Upstream's nginx listened on 80; 8080 lets the container run without privileges, and the
	// Service keeps port 80 in front of it.
	cmd.Flags().IntVar(&port, "port", port, "HTTP port")
	return cmd
}

// Serve answers on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener) error {
	if err := extproc.ServeHTTP(ctx, Handler(), ln); err != nil {
		return fmt.Errorf("notfound: %w", err)
	}
	return nil
}
