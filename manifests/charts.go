package manifests

import (
	"embed"
	"io/fs"
)

//go:embed all:charts
var charts embed.FS

// Charts holds the sandbox's Helm charts, one directory each ("modelharness", ...), loaded
// with internal/helm.LoadChart.
var Charts fs.FS = mustSub(charts, "charts")
