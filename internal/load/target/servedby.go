package target

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
)

// Decision is the part of an endpoint picker decision record (docs/epp.md "Decision
// stream") that says where a request went.
type Decision struct {
	RequestID    string `json:"requestId"`
	Status       string `json:"status"`
	Endpoint     string `json:"endpoint"`
	EndpointName string `json:"endpointName"`
}

// FindDecision scans newline-delimited decision records for requestID; the last match wins
// (a retried request id is decided again).
func FindDecision(r io.Reader, requestID string) (Decision, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var found Decision
	ok := false
	for sc.Scan() {
		var d Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return Decision{}, false, fmt.Errorf("decision stream: %w", err)
		}
		if d.RequestID == requestID {
			found, ok = d, true
		}
	}
	return found, ok, sc.Err()
}

// rankSuffix is GAIE's endpoint naming: <pod>-rank-<i>.
var rankSuffix = regexp.MustCompile(`-rank-\d+$`)

// ServedBy asks the model's endpoint picker, through the API server's service proxy, which
// endpoint it chose for requestID, and names the pod behind it. It returns "" when the picker
// has no record of the request (e.g. already pushed out of its ring of recent decisions).
func ServedBy(ctx context.Context, cs kubernetes.Interface, namespace, model, requestID string) (string, error) {
	svc := model + "-inferencepool-epp"
	body, err := cs.CoreV1().Services(namespace).ProxyGet("http", svc, "9090", "/decisions", nil).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("reading decisions of %s/%s: %w", namespace, svc, err)
	}
	defer body.Close()
	d, ok, err := FindDecision(body, requestID)
	if err != nil || !ok {
		return "", err
	}
	if host, _, err := net.SplitHostPort(d.Endpoint); err == nil {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: inferenceset.Selector(model)})
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.PodIP == host {
					return p.Name, nil
				}
			}
		}
	}
	if d.EndpointName != "" {
		return rankSuffix.ReplaceAllString(d.EndpointName, ""), nil
	}
	return d.Endpoint, nil
}
