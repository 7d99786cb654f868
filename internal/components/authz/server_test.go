package authz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/inference-sandbox/sandbox/internal/extproc"
	"github.com/inference-sandbox/sandbox/internal/extproc/extproctest"
	"github.com/inference-sandbox/sandbox/internal/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type authzHarness struct {
	client authv3.AuthorizationClient
	health healthpb.HealthClient
}

// startAuthz serves a real ext_authz server on loopback; synced gates its health.
func startAuthz(t *testing.T, keys KeyStore, synced func(context.Context) error) *authzHarness {
	t.Helper()
	ln := extproctest.Listen(t)
	extproctest.Run(t, func(ctx context.Context) error { return Serve(ctx, ln, keys, synced) })
	cc := extproctest.Dial(t, ln)
	return &authzHarness{client: authv3.NewAuthorizationClient(cc), health: healthpb.NewHealthClient(cc)}
}

// check builds a CheckRequest the way Envoy does for an HTTP/1.1 request through the gateway.
type check struct {
	host, authorization, extension string
	rawHeaders                     bool // encode_raw_headers: headers in header_map, not in the map
	authorityOnly                  bool // no http.host, only the :authority header
}

func (c check) request() *authv3.CheckRequest {
	headers := map[string]string{":method": "POST", ":path": "/v1/chat/completions"}
	if c.authorization != "" {
		headers["authorization"] = c.authorization
	}
	h := &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/chat/completions", Protocol: "HTTP/1.1"}
	if c.authorityOnly {
		headers[":authority"] = c.host
	} else {
		h.Host = c.host
	}
	if c.rawHeaders {
		h.HeaderMap = &corev3.HeaderMap{}
		for k, v := range headers {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
	} else {
		h.Headers = headers
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}
	if c.extension != "" {
		attrs.ContextExtensions = map[string]string{NamespaceExtension: c.extension}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func TestCheck(t *testing.T) {
	keys := StaticKeys{"models": "sk-models-key", "team-b": "sk-team-b-key", "nokey": ""}
	h := startAuthz(t, keys, nil)
	const (
		modelsHost = "models.gw.example.com"
		teamBHost  = "team-b.gw.kaito.sh:8080"
	)
	cases := []struct {
		name    string
		check   check
		allowed bool
		message string // substring of the denial message
	}{
		{"right key", check{host: modelsHost, authorization: "Bearer sk-models-key"}, true, ""},
		{"scheme is case-insensitive", check{host: modelsHost, authorization: "bearer   sk-models-key "}, true, ""},
		{"host with port and trailing dot", check{host: "Models.GW.example.com.:80", authorization: "Bearer sk-models-key"}, true, ""},
		{"other namespace from its host", check{host: teamBHost, authorization: "Bearer sk-team-b-key"}, true, ""},
		{"authority header only", check{host: modelsHost, authorization: "Bearer sk-models-key", authorityOnly: true}, true, ""},
		{"raw header map", check{host: modelsHost, authorization: "Bearer sk-models-key", rawHeaders: true}, true, ""},
		{"missing key", check{host: modelsHost}, false, "Missing API key"},
		{"basic auth", check{host: modelsHost, authorization: "Basic c2stbW9kZWxzLWtleQ=="}, false, "Malformed"},
		{"no scheme", check{host: modelsHost, authorization: "sk-models-key"}, false, "Malformed"},
		{"bearer without token", check{host: modelsHost, authorization: "Bearer "}, false, "Malformed"},
		{"wrong key", check{host: modelsHost, authorization: "Bearer invalid-key-12345"}, false, "Incorrect API key"},
		{"key prefix", check{host: modelsHost, authorization: "Bearer sk-models-ke"}, false, "Incorrect API key"},
		{"foreign key on models", check{host: modelsHost, authorization: "Bearer sk-team-b-key"}, false, `namespace "models"`},
		{"models key on team-b", check{host: teamBHost, authorization: "Bearer sk-models-key"}, false, `namespace "team-b"`},
		{"namespace with empty key", check{host: "nokey.gw.example.com", authorization: "Bearer x"}, false, "Incorrect API key"},
		{"unknown namespace", check{host: "ghost.gw.example.com", authorization: "Bearer sk-models-key"}, false, "Incorrect API key"},
		{"extension wins over host", check{host: modelsHost, extension: "team-b", authorization: "Bearer sk-models-key"}, false, `namespace "team-b"`},
		{"extension with its key", check{host: modelsHost, extension: "team-b", authorization: "Bearer sk-team-b-key"}, true, ""},
		{"extension without host", check{extension: "models", authorization: "Bearer sk-models-key"}, true, ""},
		{"localhost", check{host: "localhost:8080", authorization: "Bearer sk-models-key"}, false, "Cannot determine the gateway namespace"},
		{"IPv4 host", check{host: "127.0.0.1:8080", authorization: "Bearer sk-models-key"}, false, "Cannot determine"},
		{"IPv6 host", check{host: "[::1]:8080", authorization: "Bearer sk-models-key"}, false, "Cannot determine"},
		{"no host", check{authorization: "Bearer sk-models-key"}, false, "Cannot determine"},
		{"bad label", check{host: "my_ns.gw.example.com", authorization: "Bearer sk-models-key"}, false, "Cannot determine"},
		{"bad extension", check{host: modelsHost, extension: "Not/A/Namespace", authorization: "Bearer sk-models-key"}, false, "Cannot determine"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := h.client.Check(context.Background(), tc.check.request())
			if err != nil {
				t.Fatal(err)
			}
			if tc.allowed {
				if resp.GetStatus().GetCode() != int32(codes.OK) || resp.GetOkResponse() == nil {
					t.Fatalf("denied: %v", resp)
				}
				return
			}
			checkDenied(t, resp, tc.message)
		})
	}
}

func checkDenied(t *testing.T, resp *authv3.CheckResponse, message string) {
	t.Helper()
	if resp.GetStatus().GetCode() != int32(codes.Unauthenticated) {
		t.Fatalf("gRPC status = %v, want Unauthenticated", resp.GetStatus())
	}
	d := resp.GetDeniedResponse()
	if d.GetStatus().GetCode() != http.StatusUnauthorized {
		t.Errorf("HTTP status = %v, want 401", d.GetStatus().GetCode())
	}
	hdr := http.Header{}
	if err := extproc.ApplyHeaderOptions(hdr, d.GetHeaders()); err != nil {
		t.Fatal(err)
	}
	if hdr.Get("Content-Type") != "application/json" || hdr.Get(openai.ErrorSourceHeader) != "authz" {
		t.Errorf("headers = %v", hdr)
	}
	var env struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &env); err != nil {
		t.Fatalf("body %q: %v", d.GetBody(), err)
	}
	e := env.Error
	if e["type"] != "invalid_request_error" || e["code"] != "invalid_api_key" || e["param"] != nil {
		t.Errorf("body = %s", d.GetBody())
	}
	if msg, _ := e["message"].(string); !strings.Contains(msg, message) {
		t.Errorf("message %q does not contain %q", msg, message)
	}
	if strings.Contains(d.GetBody(), "sk-") {
		t.Errorf("denial leaks a key: %s", d.GetBody())
	}
}

type brokenStore struct{}

func (brokenStore) APIKey(string) ([]byte, bool, error) { return nil, false, errors.New("cache gone") }

func TestStoreFailureIsAnOutageNotADenial(t *testing.T) {
	h := startAuthz(t, brokenStore{}, nil)
	_, err := h.client.Check(context.Background(), check{host: "models.gw.example.com", authorization: "Bearer k"}.request())
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want Unavailable so the data plane applies its failure mode", err)
	}
}

func TestHealthFollowsSync(t *testing.T) {
	release := make(chan struct{})
	h := startAuthz(t, StaticKeys{}, func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	statusOf := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := h.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if s := statusOf(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before sync: %v", s)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for statusOf() != healthpb.HealthCheckResponse_SERVING {
		if time.Now().After(deadline) {
			t.Fatal("never SERVING after sync")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoGoroutineGrowth(t *testing.T) {
	h := startAuthz(t, StaticKeys{"models": "sk-k"}, nil)
	req := check{host: "models.gw.example.com", authorization: "Bearer sk-k"}.request()
	if _, err := h.client.Check(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	baseline := goleak.IgnoreCurrent()
	for i := 0; i < 200; i++ {
		if _, err := h.client.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if err := goleak.Find(baseline); err != nil {
		t.Error(err)
	}
}

func TestEqualIsExact(t *testing.T) {
	for _, c := range []struct {
		token, key string
		want       bool
	}{{"a", "a", true}, {"a", "b", false}, {"", "", true}, {"ab", "a", false}, {"a", "ab", false}} {
		if got := equal(c.token, []byte(c.key)); got != c.want {
			t.Errorf("equal(%q, %q) = %v", c.token, c.key, got)
		}
	}
}
