// Package crds provides the upstream CRDs `sandbox up` installs: the Gateway API's standard
// channel and the Gateway API Inference Extension's InferencePool and InferenceObjective. They
// are read from the upstream Go modules in the module cache (downloaded through the module
// proxy when missing) rather than copied into this repository, so the installed CRDs are
// exactly the released ones: objects written for upstream apply unchanged, and objects the
// sandbox writes would apply upstream.
package crds

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/internal/versions"
)

const (
	// GatewayAPIModule ships the CRDs in config/crd/<channel>.
	GatewayAPIModule = "sigs.k8s.io/gateway-api"
	// GatewayAPIVersion is the module version in go.mod (a test keeps them equal).
	GatewayAPIVersion = "v1.6.3"
	standardDir       = "config/crd/standard"
)

const (
	// InferenceExtensionModule ships its CRDs in config/crd/bases.
	InferenceExtensionModule = "sigs.k8s.io/gateway-api-inference-extension"
	inferenceExtensionDir    = "config/crd/bases"
	// InferencePoolFile and InferenceObjectiveFile are the two Inference Extension APIs the
	// offline components implement; its other CRDs (InferenceModelRewrite, InferencePoolImport)
	// are left out, since nothing here would act on them.
	InferencePoolFile      = "inference.networking.k8s.io_inferencepools.yaml"
	InferenceObjectiveFile = "inference.networking.x-k8s.io_inferenceobjectives.yaml"
)

// File is one manifest file: a CRD, or the ValidatingAdmissionPolicy the standard channel
// ships with its CRDs to refuse unsafe upgrades.
type File struct {
	Name string
	Data []byte
}

// GatewayAPI returns the standard-channel manifests of GatewayAPIVersion, sorted by name.
func GatewayAPI(ctx context.Context) ([]File, error) {
	dir, err := ModuleDir(ctx, GatewayAPIModule, GatewayAPIVersion)
	if err != nil {
		return nil, err
	}
	return readManifests(filepath.Join(dir, standardDir))
}

// ModuleDir returns the module cache directory of module@version, downloading it when needed.
// It runs `go mod download -json` outside any module, so the caller's go.mod is never touched.
func ModuleDir(ctx context.Context, module, version string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go command to read %s@%s from the module cache: %w", module, version, err)
	}
	cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", module, version, err, strings.TrimSpace(stderr.String()))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s reported no directory", module, version)
	}
	return info.Dir, nil
}

func readManifests(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the CRDs in %s: %w", dir, err)
	}
	var files []File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		files = append(files, File{Name: e.Name(), Data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD manifests in %s", dir)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// InferenceExtension returns the InferencePool and InferenceObjective CRDs of the Inference
// Extension release the sandbox pins (versions.InferenceExtension, the one the upstream
// profile installs too).
func InferenceExtension(ctx context.Context) ([]File, error) {
	dir, err := ModuleDir(ctx, InferenceExtensionModule, versions.InferenceExtension)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, name := range []string{InferencePoolFile, InferenceObjectiveFile} {
		data, err := os.ReadFile(filepath.Join(dir, inferenceExtensionDir, name))
		if err != nil {
			return nil, fmt.Errorf("reading the Inference Extension CRD %s: %w", name, err)
		}
		files = append(files, File{Name: name, Data: data})
	}
	return files, nil
}

// Definitions decodes the CustomResourceDefinitions the gateway and the endpoint picker need:
// the Gateway API standard channel (without its admission policy), InferencePool and
// InferenceObjective. For controller and data-plane tests against a real kube-apiserver.
func Definitions(ctx context.Context) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := GatewayAPI(ctx)
	if err != nil {
		return nil, err
	}
	ie, err := InferenceExtension(ctx)
	if err != nil {
		return nil, err
	}
	return Decode(append(files, ie...))
}

// Decode returns the CustomResourceDefinitions among the files' objects.
func Decode(files []File) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(f.Data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", f.Name, err)
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(doc, crd); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", f.Name, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				out = append(out, crd)
			}
		}
	}
	return out, nil
}
