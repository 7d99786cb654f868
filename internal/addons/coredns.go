package addons

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// corefileHashAnnotation on CoreDNS' pod template restarts CoreDNS when the Corefile changed
// (its reload plugin would also pick it up, but only after a delay).
const corefileHashAnnotation = "sandbox.inference.dev/corefile-sha256"

// isolateCoreDNS removes upstream forwarding from CoreDNS: in the offline profile cluster
// names resolve and every other name fails inside the cluster, instead of being forwarded
// through the node's resolver to the host's (shared/facts/offline-kind.md §4.12).
func isolateCoreDNS(ctx context.Context, env *Env) error {
	cms := env.Client.Clientset.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the CoreDNS configuration: %w", err)
	}
	corefile := StripUpstream(cm.Data["Corefile"])
	if corefile != cm.Data["Corefile"] {
		cm.Data["Corefile"] = corefile
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "sandbox"}); err != nil {
			return fmt.Errorf("updating the CoreDNS configuration: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(corefile))
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{corefileHashAnnotation: hex.EncodeToString(sum[:])[:16]},
	}}}})
	_, err = env.Client.Clientset.AppsV1().Deployments("kube-system").Patch(ctx, "coredns", types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "sandbox"})
	if err != nil {
		return fmt.Errorf("restarting CoreDNS: %w", err)
	}
	return nil
}

// StripUpstream removes every `forward` directive (with its block) and the `loop` plugin,
// which only exists to detect forwarding loops, from a Corefile.
func StripUpstream(corefile string) string {
	var out []string
	depth := 0 // > 0 while skipping a forward block
	for _, line := range strings.Split(corefile, "\n") {
		t := strings.TrimSpace(line)
		if depth > 0 {
			depth += strings.Count(t, "{") - strings.Count(t, "}")
			continue
		}
		fields := strings.Fields(t)
		if len(fields) > 0 && (fields[0] == "forward" || fields[0] == "loop") {
			depth = strings.Count(t, "{") - strings.Count(t, "}")
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
