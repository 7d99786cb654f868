package crds

import (
	_ "embed"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// InferenceObjectiveFile is the InferenceObjective CRD's manifest file name.
const InferenceObjectiveFile = "inference.networking.x-k8s.io_inferenceobjectives.yaml"

//go:embed inference.networking.x-k8s.io_inferenceobjectives.yaml
var inferenceObjectiveYAML []byte

// InferenceObjectiveYAML returns the InferenceObjective CRD (inference.networking.x-k8s.io
// v1alpha2, llm-d-facts §4.2) that the endpoint picker reads request priorities from.
func InferenceObjectiveYAML() []byte { return inferenceObjectiveYAML }

// InferenceObjective decodes the InferenceObjective CRD, for tests against a real kube-apiserver.
func InferenceObjective() (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(inferenceObjectiveYAML, crd); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", InferenceObjectiveFile, err)
	}
	return crd, nil
}
