package addons

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/helm"
	"github.com/inference-sandbox/sandbox/manifests"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/*.golden from the current charts")

// offlineRenders are the offline profile's chart renderings that the istio mode must leave
// byte-for-byte unchanged: the defaults, and the values `up` and `model deploy` pass.
var offlineRenders = []struct {
	golden, chart, release, namespace string
	values                            map[string]any
}{
	{"modelharness-defaults.golden", "modelharness", "modelharness", "models", map[string]any{}},
	{"modelharness-up.golden", "modelharness", "modelharness", "models", map[string]any{
		"namespace": "team-a", "gatewayClassName": "sandbox",
		"modelNotFound": map[string]any{"namespace": "sandbox-system"},
	}},
	{"modeldeployment-fixed.golden", "modeldeployment", "phi-4-mini", "models", map[string]any{
		"name": "phi-4-mini", "namespace": "models", "model": "phi-4-mini-instruct", "replicas": 2,
		"latencyProfile": "", "latencyCalculator": "", "enableScaling": false,
		"epp": map[string]any{"image": map[string]any{"repository": "sandbox-stackd:0123456789ab"}},
	}},
	{"modeldeployment-scaled.golden", "modeldeployment", "ministral-3b", "models", map[string]any{
		"name": "ministral-3b", "namespace": "models", "model": "ministral-3-3b-instruct", "replicas": 1,
		"latencyProfile": "8b-h100", "latencyCalculator": "constant", "enableScaling": true,
		"minReplicas": 1, "maxReplicas": 4,
		"epp": map[string]any{"image": map[string]any{"repository": "sandbox-stackd:0123456789ab"}},
	}},
}

// TestOfflineRenderingUnchanged pins the offline rendering of both charts, so adding the
// istio mode cannot change a byte of what the offline profile installs.
func TestOfflineRenderingUnchanged(t *testing.T) {
	for _, r := range offlineRenders {
		t.Run(r.golden, func(t *testing.T) {
			c, err := helm.LoadChart(manifests.Charts, r.chart)
			if err != nil {
				t.Fatal(err)
			}
			got, err := helm.Render(c, r.release, r.namespace, r.values)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", r.golden)
			if *updateGolden {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-golden once to create it)", err)
			}
			if got != string(want) {
				t.Errorf("offline rendering of %s changed; diff against %s:\n%s", r.chart, path, firstDiff(string(want), got))
			}
		})
	}
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	w, g := splitLines(want), splitLines(got)
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return "(identical lines, different line endings)"
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
