package model

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/iostreams"
	"github.com/inference-sandbox/sandbox/internal/models"
)

func TestDeployFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: "sandbox"}
	var got *DeployOptions
	cmd := NewCmdDeploy(f, func(o *DeployOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"llama-3-8b", "--preset", "llama-3.1-8b-instruct", "--replicas", "2",
		"--min-replicas", "1", "--max-replicas", "4", "-n", "team-a", "--latency-profile", "8b-h100", "--wait", "0"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	d := got.deployOptions()
	if d.Name != "llama-3-8b" || d.Preset != "llama-3.1-8b-instruct" || d.Replicas != 2 || d.MinReplicas != 1 ||
		d.MaxReplicas != 4 || d.Namespace != "team-a" || d.LatencyProfile != "8b-h100" || d.Wait != 0 || !d.Autoscaled() {
		t.Errorf("options %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Error(err)
	}

	cmd = NewCmdDeploy(f, func(o *DeployOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"m"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Namespace != models.DefaultNamespace || got.Replicas != 1 || got.Wait != 3*time.Minute || got.deployOptions().Autoscaled() {
		t.Errorf("defaults %+v", got)
	}
	cmd = NewCmdDeploy(f, func(*DeployOptions) error { return nil })
	cmd.SetArgs([]string{})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); err == nil {
		t.Error("deploy without a name accepted")
	}
}

func TestListAndDeleteFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IOStreams: ios, Name: "sandbox"}
	var lo *ListOptions
	cmd := NewCmdList(f, func(o *ListOptions) error { lo = o; return nil })
	cmd.SetArgs([]string{"-o", "json", "-A"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if lo.Output != "json" || !lo.AllNamespaces {
		t.Errorf("list options %+v", lo)
	}
	cmd = NewCmdList(f, func(o *ListOptions) error { return nil })
	cmd.SetArgs([]string{"-o", "yaml"})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "json or table") {
		t.Errorf("-o yaml: %v", err)
	}
	var do *DeleteOptions
	cmd = NewCmdDelete(f, func(o *DeleteOptions) error { do = o; return nil })
	cmd.SetArgs([]string{"phi-4-mini", "--namespace", "team-a"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if do.Name != "phi-4-mini" || do.Namespace != "team-a" {
		t.Errorf("delete options %+v", do)
	}
}

func TestPrintModels(t *testing.T) {
	list := []models.Model{
		{Name: "phi-4-mini", Namespace: "models", Preset: "phi-4-mini-instruct", Replicas: 2, ReadyReplicas: 1,
			Autoscaled: true, MinReplicas: 1, MaxReplicas: 4, Message: "inferenceset is not ready, 1/2 replicas are ready",
			Endpoint: "http://127.0.0.1:30080"},
		{Name: "big", Namespace: "models", Preset: "p", Replicas: 1, ReadyReplicas: 1, Ready: true},
	}
	var b strings.Builder
	if err := printModels(&b, "", list); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"READY", "1/2", "1..4", "http://127.0.0.1:30080", "NotReady: inferenceset is not ready", "big"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := printModels(&b, "json", list); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatal(err)
	}
	if back[0]["replicas"] != float64(2) || back[0]["readyReplicas"] != float64(1) || back[0]["endpoint"] != "http://127.0.0.1:30080" {
		t.Errorf("json %v", back[0])
	}
	b.Reset()
	if err := printModels(&b, "json", nil); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("empty json list %q %v", b.String(), err)
	}
}
