package versions

import "strings"

// The upstream profile installs the stack the KAITO team runs (kaito-project/production-stack,
// shared/facts/upstream-production-stack.md §3): real charts from their Helm repositories and
// OCI registries, real images. Nothing here is fetched on this machine's offline path; these
// are what `up --profile upstream` pulls, and what its preflight checks first.
//
// Checked is the date of the upstream snapshot each pin was read from (the research in
// shared/facts); the sandbox's machines have no internet, so no pin here has been re-checked
// against its registry since.
const (
	// Istio 1.29.0 had an omitNil template error in its charts, hence .2 (facts §7.4).
	Istio          = "1.29.2"
	IstioChartRepo = "https://istio-release.storage.googleapis.com/charts"
	IstioHub       = "docker.io/istio"

	// Gateway API Inference Extension: CRDs pinned (upstream e2e used "latest"), BBR chart.
	InferenceExtension     = "v1.5.0"
	InferenceExtensionCRDs = "https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/" + InferenceExtension + "/manifests.yaml"
	BBRChart               = "oci://registry.k8s.io/gateway-api-inference-extension/charts/body-based-routing"
	BBRImage               = "registry.k8s.io/gateway-api-inference-extension/bbr:" + InferenceExtension

	// KAITO workspace chart (InferenceSet controller); v0.11+ takes nodeProvisioner=byo.
	KAITO          = "0.12.0"
	KAITOChartRepo = "https://kaito-project.github.io/kaito/charts/kaito"
	KAITOImage     = "mcr.microsoft.com/aks/kaito/workspace:" + KAITO

	// llm-gateway-auth's API-key chart (APIKey operator + apikey-authz ext_authz).
	LLMGatewayAuth      = "0.1.0"
	LLMGatewayAuthChart = "oci://mcr.microsoft.com/aks/kaito/helm/llm-gateway-apikey"

	// KEDA chart as upstream's e2e pins it (the offline profile builds KEDA from its module).
	KEDAChart     = "2.19.0"
	KEDAChartRepo = "https://kedacore.github.io/charts"

	// keda-kaito-scaler v0.5.x reads the scaledobject.kaito.sh/threshold annotations the
	// modeldeployment chart writes; v0.6 wants the metrics list instead (kaito-keda facts §3).
	KEDAKaitoScaler          = "0.5.1"
	KEDAKaitoScalerChartRepo = "https://kaito-project.github.io/keda-kaito-scaler/charts/kaito-project"

	// The llm-d endpoint picker and simulator the production stack runs.
	EPPImage = "mcr.microsoft.com/oss/v2/llm-d/llm-d-inference-scheduler:v0.7.1"
	SimImage = "ghcr.io/llm-d/llm-d-inference-sim:v0.10.2"

	// IstioModule is the istio.io/istio Go module the tests read Istio's CRDs and base/istiod
	// chart templates from (the proxy serves only pseudo-versions of Istio's main branch; this
	// one is from 2026-08-27, after 1.29.2).
	IstioModule = "v0.0.0-20260827124520-eed52ebb66ad"

	// The shared model-not-found backend of upstream's REF snapshot (nginx answering 404 JSON).
	NotFoundImage = "docker.io/library/nginx:1.29-alpine"
)

// UpstreamPin is one chart or image of the upstream profile.
type UpstreamPin struct {
	Name    string
	Kind    string // "chart", "image", "manifest" or "test-schemas" (read by tests only)
	Version string
	// Source is the chart repository URL, the OCI chart reference, the image reference or the
	// manifest URL.
	Source  string
	Checked string
}

// Upstream is every upstream version, one table.
var Upstream = []UpstreamPin{
	{"istio-base", "chart", Istio, IstioChartRepo, "2026-08-20"},
	{"istiod", "chart", Istio, IstioChartRepo, "2026-08-20"},
	{"istio-pilot", "image", Istio, IstioHub + "/pilot:" + Istio, "2026-08-20"},
	{"istio-proxyv2", "image", Istio, IstioHub + "/proxyv2:" + Istio, "2026-08-20"},
	{"istio-module", "test-schemas", IstioModule, "istio.io/istio (Go module proxy)", "2026-11-25"},
	{"gateway-api-crds", "manifest", "v1.6.3", "sigs.k8s.io/gateway-api (Go module proxy; upstream e2e: v1.2.0)", "2026-11-25"},
	{"inference-extension-crds", "manifest", InferenceExtension, InferenceExtensionCRDs, "2026-08-20"},
	{"body-based-routing", "chart", InferenceExtension, BBRChart, "2026-08-20"},
	{"bbr", "image", InferenceExtension, BBRImage, "2026-08-20"},
	{"kaito-workspace", "chart", KAITO, KAITOChartRepo, "2026-08-21"},
	{"kaito-workspace", "image", KAITO, KAITOImage, "2026-08-21"},
	{"llm-gateway-apikey", "chart", LLMGatewayAuth, LLMGatewayAuthChart, "2026-08-20"},
	{"keda", "chart", KEDAChart, KEDAChartRepo, "2026-08-20"},
	{"keda-kaito-scaler", "chart", KEDAKaitoScaler, KEDAKaitoScalerChartRepo, "2026-08-14"},
	{"llm-d-inference-scheduler", "image", tagOf(EPPImage), EPPImage, "2026-08-20"},
	{"llm-d-inference-sim", "image", tagOf(SimImage), SimImage, "2026-08-20"},
	{"model-not-found (nginx)", "image", tagOf(NotFoundImage), NotFoundImage, "2026-08-20"},
}

// UpstreamImages are the images the upstream profile pulls once on the host and loads into
// every node (the ones a chart pulls itself are left to the nodes).
func UpstreamImages() []string {
	var out []string
	for _, p := range Upstream {
		if p.Kind == "image" {
			out = append(out, p.Source)
		}
	}
	return out
}

func tagOf(image string) string {
	if i := strings.LastIndex(image, ":"); i > 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return "latest"
}

// upstreamPins are the Upstream rows as Table rows, named "upstream <kind> <name>".
func upstreamPins() []Pin {
	out := make([]Pin, len(Upstream))
	for i, p := range Upstream {
		out[i] = Pin{Name: "upstream " + p.Kind + " " + p.Name, Version: p.Version, Source: p.Source, Checked: p.Checked}
	}
	return out
}
