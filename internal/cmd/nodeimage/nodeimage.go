// Package nodeimage implements `sandbox node-image`.
package nodeimage

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/inference-sandbox/sandbox/internal/cmdutil"
	"github.com/inference-sandbox/sandbox/internal/nodeimage"
	"github.com/inference-sandbox/sandbox/internal/versions"
)

// BuildOptions are the flags of `node-image build`.
type BuildOptions struct {
	f       *cmdutil.Factory
	Options nodeimage.Options
}

// NewCmd returns `sandbox node-image`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node-image",
		Short: "Build the offline kind node image",
		Long: `The offline profile runs kind nodes from an image built on this machine, with no
container registry: Kubernetes, etcd, CoreDNS, crictl and pause are compiled from the Go
module proxy and a Debian root file system is made with debootstrap.`,
	}
	cmd.AddCommand(newBuildCmd(f))
	return cmd
}

func newBuildCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &BuildOptions{f: f}
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build (or reuse) the offline node image and print its name",
		Long: `Build the offline node image, or reuse it when it already exists.

The first build compiles Kubernetes and takes 10-15 minutes on two cores; each stage is
cached under --cache-dir, and an existing image is found in seconds. The image name,
printed on stdout, carries a hash of the recipe, so changing the recipe builds a new image.

Needs root, Docker, Go, debootstrap and containerd on the host (make up installs them).`,
		Example: `  # build the default Kubernetes version
  sudo sandbox node-image build

  # rebuild even if the image exists (stage caches are reused)
  sudo sandbox node-image build --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Options.Status = f.Status()
			image, err := nodeimage.Build(cmd.Context(), opts.Options)
			if err != nil {
				return err
			}
			fmt.Fprintln(f.IOStreams.Out, image)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Options.KubernetesVersion, "kubernetes", versions.Kubernetes, "Kubernetes version to build (v1.34.x)")
	cmd.Flags().StringVar(&opts.Options.CacheDir, "cache-dir", nodeimage.DefaultCacheDir(), "where compiled binaries and the root file system are cached")
	cmd.Flags().StringVar(&opts.Options.Mirror, "mirror", "", "Debian archive to debootstrap from (default: the host's apt mirror)")
	cmd.Flags().BoolVar(&opts.Options.Force, "force", false, "rebuild the image even when it exists")
	return cmd
}
