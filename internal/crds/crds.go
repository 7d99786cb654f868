// Package crds provides the Gateway API's standard-channel CRDs for `sandbox up`. They are read
// from the sigs.k8s.io/gateway-api module in the Go module cache (downloaded through the module
// proxy when missing) rather than copied into this repository, so the installed CRDs always
// match the Go types the gateway controller was built with.
package crds

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/inference-sandbox/sandbox/manifests"
)

const (
	// GatewayAPIModule ships the CRDs in config/crd/<channel>.
	GatewayAPIModule = "sigs.k8s.io/gateway-api"
	// GatewayAPIVersion is the module version in go.mod (a test keeps them equal).
	GatewayAPIVersion = "v1.6.3"
	standardDir       = "config/crd/standard"
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
		return nil, fmt.Errorf("reading the Gateway API CRDs: %w", err)
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

// Definitions decodes the CustomResourceDefinitions the gateway needs: the Gateway API standard
// channel (without its admission policy) and the InferencePool CRD of manifests/crds. For
// controller and data-plane tests against a real kube-apiserver.
func Definitions(ctx context.Context) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := GatewayAPI(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := fs.ReadFile(manifests.CRDs, "inference.networking.k8s.io_inferencepools.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading the InferencePool CRD: %w", err)
	}
	files = append(files, File{Name: "inference.networking.k8s.io_inferencepools.yaml", Data: pool})
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
