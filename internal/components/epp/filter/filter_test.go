package filter

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/inference-sandbox/sandbox/internal/components/epp/datastore"
	"github.com/inference-sandbox/sandbox/internal/components/epp/scheduling"
)

func run(t *testing.T, f scheduling.Factory, params string, headers map[string]string, eps []*datastore.Endpoint) string {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	p, err := f("f", raw, scheduling.Handle{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range p.(scheduling.Filter).Filter(context.Background(), nil, &scheduling.Request{Headers: headers}, eps) {
		names = append(names, e.Name)
	}
	return strings.Join(names, ",")
}

func pods() []*datastore.Endpoint {
	var out []*datastore.Endpoint
	for i, role := range []string{"decode", "prefill", "both", ""} {
		l := map[string]string{"zone": fmt.Sprint(i % 2)}
		if role != "" {
			l[RoleLabel] = role
		}
		out = append(out, datastore.NewEndpoint(datastore.Spec{Name: "p" + fmt.Sprint(i),
			Address: fmt.Sprintf("10.0.0.%d:8000", i), Labels: l}))
	}
	return out
}

func TestRoleFilters(t *testing.T) {
	if got := run(t, NewDecode, "", nil, pods()); got != "p0,p2,p3" {
		t.Errorf("decode-filter kept %s", got)
	}
	if got := run(t, NewPrefill, "", nil, pods()); got != "p1" {
		t.Errorf("prefill-filter kept %s", got)
	}
}

func TestLabelSelector(t *testing.T) {
	if got := run(t, NewLabelSelector, `{"matchLabels":{"zone":"1","llm-d.ai/role":"prefill"}}`, nil, pods()); got != "p1" {
		t.Errorf("kept %s", got)
	}
	if _, err := NewLabelSelector("f", nil, scheduling.Handle{}); err == nil {
		t.Error("selector without matchLabels accepted")
	}
}

func TestHeaderTestingFilter(t *testing.T) {
	h := map[string]string{TestEndpointHeader: "10.0.0.1, 10.0.0.3:8000,10.0.0.2:9"}
	if got := run(t, NewHeaderTesting, "", h, pods()); got != "p1,p3" {
		t.Errorf("kept %s", got)
	}
	if got := run(t, NewHeaderTesting, "", nil, pods()); got != "" {
		t.Errorf("no header kept %s", got)
	}
}
