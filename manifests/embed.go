// Package manifests embeds the Kubernetes objects the sandbox installs from this repository, so
// the sandbox and stackd binaries carry them and need no checkout at run time.
package manifests

import (
	"embed"
	"io/fs"
)

//go:embed all:crds
var crds embed.FS

// CRDs holds the CustomResourceDefinitions this repository defines, one YAML file each, at the
// root of the file system (e.g. "kaito.sh_apikeys.yaml").
var CRDs fs.FS = mustSub(crds, "crds")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic("manifests: " + err.Error()) // only a broken embed pattern can get here
	}
	return sub
}
