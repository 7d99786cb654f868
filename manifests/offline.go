package manifests

import (
	"embed"
	"io/fs"
)

//go:embed all:offline
var offline embed.FS

// Offline holds the offline profile's own components as Go templates of Kubernetes
// manifests (e.g. "mocker.yaml"), rendered with the addon values by internal/addons.
var Offline fs.FS = mustSub(offline, "offline")
