package chat

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/components/stacktest"
	"github.com/inference-sandbox/sandbox/internal/iostreams"
)

func TestChatCommand(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Sims: 2}, "phi-4-mini")
	ios, _, stdout, stderr := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: "test", Kubeconfig: filepath.Join(t.TempDir(), "none")}
	base := []string{"--url", s.URL, "--api-key", stacktest.Key, "--model", "phi-4-mini", "--max-tokens", "8"}

	cmd := NewCmd(f)
	cmd.SetArgs(append(base, "Hello there"))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if strings.TrimSpace(stdout.String()) == "" || !strings.Contains(stderr.String(), "pod phi-4-mini-") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}

	stdout.Reset()
	cmd = NewCmd(f)
	cmd.SetArgs(append(base, "-o", "json", "Hello there"))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if r.Answer == "" || !strings.HasPrefix(r.Pod, "phi-4-mini-") || r.PodSource != "response-header" || r.RequestID == "" {
		t.Errorf("json: %+v", r)
	}

	// Extra headers go through the whole chain; a reserved one is refused before anything is sent.
	stdout.Reset()
	cmd = NewCmd(f)
	cmd.SetArgs(append(base, "-H", "x-gateway-inference-objective: batch", "Hello there"))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	cmd = NewCmd(f)
	cmd.SetArgs(append(base, "-H", "Content-Type: text/plain", "Hello there"))
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--header") || stdout.Len() != 0 {
		t.Errorf("reserved header: error %v, stdout %q", err, stdout)
	}
}
