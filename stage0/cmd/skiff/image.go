package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/image/layer"
	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/atomicfile"
	"github.com/skiff-project/skiff/stage1/abi"
)

// tmpMaxAge is how old a leftover in the store's tmp/ must be for image gc
// to remove it (a fetch killed mid-way).
const tmpMaxAge = time.Hour

func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Manage the image store: list, rm, gc, export, extract, render, cat-manifest, verify",
		Long: `The image store (DIR/images) holds every fetched image once: blobs by
sha256 digest, each layer extracted once and shared between images, and the
names images were fetched as. NAME below is such a name (as 'image list'
shows it), a full image ID or an unambiguous prefix of at least 4 hex digits.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(newImageListCmd(g), newImageRmCmd(g), newImageGCCmd(g), newImageExportCmd(g),
		newImageExtractCmd(g, false), newImageExtractCmd(g, true), newImageCatManifestCmd(g), newImageVerifyCmd(g))
	return c
}

// imageJSON is one image of 'image list --format=json'.
type imageJSON struct {
	ID       string    `json:"id"`
	Names    []string  `json:"names"`
	Size     int64     `json:"size"`
	Imported time.Time `json:"imported"`
	LastUsed time.Time `json:"lastUsed"`
}

func newImageListCmd(g *globals) *cobra.Command {
	var format string
	var noLegend bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the images in the store",
		Long: `List prints each image's ID, names, size (manifest, config and compressed
layers), when it was imported and when a pod last used it, oldest import first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format=%s: unknown format; use table or json", format)
			}
			s, err := openStore(g)
			if err != nil {
				return err
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			slices.SortFunc(imgs, func(a, b *store.Image) int { return a.Imported.Compare(b.Imported) })
			out := cmd.OutOrStdout()
			if format == "json" {
				list := make([]imageJSON, 0, len(imgs))
				for _, img := range imgs {
					list = append(list, imageJSON{ID: img.ID.String(), Names: nonNil(img.Names), Size: img.Size, Imported: img.Imported, LastUsed: img.LastUsed})
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
			if !noLegend {
				fmt.Fprintln(tw, "ID\tNAMES\tSIZE\tIMPORTED\tLAST USED")
			}
			for _, img := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shortImageID(img.ID), strings.Join(img.Names, ","),
					humanSize(img.Size), ago(&img.Imported), ago(&img.LastUsed))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&format, "format", "table", "output format: table or json")
	c.Flags().BoolVar(&noLegend, "no-legend", false, "omit the header line")
	return c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func shortImageID(id digest.Digest) string { return "sha256:" + id.Encoded()[:12] }

func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// podUse is what the pods on this host use: image IDs and layer directories,
// each with a pod that uses it. It is read from every pod's pod.json.
type podUse struct {
	images map[string]string // image ID → pod UUID
	layers map[string]bool
}

func podsUsing(dataDir string) (podUse, error) {
	u := podUse{images: map[string]string{}, layers: map[string]bool{}}
	files, err := filepath.Glob(filepath.Join(dataDir, "pods", "*", "*", abi.PodManifestFile))
	if err != nil {
		return u, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // the pod moved or went away meanwhile
		}
		var m abi.PodManifest
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			return u, fmt.Errorf("pod manifest %s: %w", f, err)
		}
		uuid := filepath.Base(filepath.Dir(f))
		u.images[m.Stage1.ImageID] = uuid
		for _, l := range m.Stage1.Rootfs.Layers {
			u.layers[l] = true
		}
		for _, a := range m.Apps {
			u.images[a.Image.ID] = uuid
			for _, l := range a.Rootfs.Layers {
				u.layers[l] = true
			}
		}
	}
	return u, nil
}

func newImageRmCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm NAME|ID...",
		Short: "Remove images from the store",
		Long: `Rm removes each image (with all its names). An image a pod uses (in any
state, until 'skiff gc' or 'skiff rm' removes the pod) is refused unless
--force; even then its layers stay while the pod exists. Blobs and layers are
freed by 'skiff image gc'.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore(g)
			if err != nil {
				return err
			}
			use, err := podsUsing(g.dir)
			if err != nil {
				return err
			}
			var failed int
			for _, name := range args {
				if err := removeImage(s, use, name, force); err != nil {
					fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
					failed++
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), "removed", name)
			}
			if failed > 0 {
				return &exitError{code: abi.ExitSkiffFailure}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove images even while pods use them")
	return c
}

func removeImage(s *store.Store, use podUse, name string, force bool) error {
	img, err := s.Lookup(name)
	if err != nil {
		return err
	}
	if uuid, ok := use.images[img.ID.String()]; ok && !force {
		return fmt.Errorf("image %q is used by pod %s; remove the pod first ('skiff rm %s') or pass --force", name, uuid, uuid)
	}
	return s.RemoveImage(img.ID)
}

func newImageGCCmd(g *globals) *cobra.Command {
	var grace time.Duration
	c := &cobra.Command{
		Use:   "gc",
		Short: "Remove unused images, then blobs and layers no image needs",
		Long: `GC removes the images no pod uses and that were not used (fetched or run)
within the grace period, then every blob and layer directory that no image
references and no pod uses, and leftovers of killed fetches older than an
hour. It waits for fetches in progress.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openStore(g)
			if err != nil {
				return err
			}
			use, err := podsUsing(g.dir)
			if err != nil {
				return err
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, img := range imgs {
				if _, used := use.images[img.ID.String()]; used || time.Since(img.LastUsed) < grace {
					continue
				}
				if err := s.RemoveImage(img.ID); err != nil && !errors.Is(err, store.ErrImageNotFound) {
					return err
				}
				fmt.Fprintf(out, "removed image %s %s\n", img.ID, strings.Join(img.Names, ","))
			}
			r, err := s.Prune(use.layers, tmpMaxAge)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "freed %d blobs (%s), %d layers, %d leftovers\n", r.Blobs, humanSize(r.Bytes), r.Layers, r.Tmp)
			return nil
		},
	}
	c.Flags().DurationVar(&grace, "grace-period", 24*time.Hour, "keep images used more recently than this")
	return c
}

func newImageExportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME FILE|-",
		Short: "Write an image to FILE (or '-', standard output) as an OCI archive (oci-archive)",
		Long: `Export writes the image's manifest, config and layer blobs, exactly as
stored, as a tar of an OCI image layout; 'skiff run oci-archive:FILE' and
'skopeo copy oci-archive:FILE ...' read it. Its index names the image
"latest", or by the tag of a registry NAME. FILE is written through a
temporary file and a rename, so it is replaced only once complete; '-' (or a
pipe, a fifo, /dev/stdout redirected to a file) is streamed to. A link, a
terminal, a directory or another device is refused, never replaced.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, img, err := lookupImage(g, args[0])
			if err != nil {
				return err
			}
			f, err := atomicfile.CreateOutput(args[1], 0o644)
			if err != nil {
				return err
			}
			defer f.Abort()
			if err := s.Export(img, exportRefName(args[0]), f); err != nil {
				return err
			}
			return f.Commit()
		},
	}
}

// exportRefName is the ref name an exported image gets: the tag of a
// registry name, else "latest".
func exportRefName(name string) string {
	if r, err := reference.Parse(name); err == nil && r.Transport == reference.Docker && r.Tag != "" {
		return r.Tag
	}
	return "latest"
}

func newImageExtractCmd(g *globals, render bool) *cobra.Command {
	c := &cobra.Command{
		Use:   "extract NAME DIR",
		Short: "Write the image's root filesystem, flattened, into DIR",
		Long: `Extract copies the image's layers into DIR, lowest first, applying
whiteouts and opaque directories: DIR holds the root filesystem a pod's app
sees. DIR must not exist or be empty.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, img, err := lookupImage(g, args[0])
			if err != nil {
				return err
			}
			return extractImage(s, img, args[1], render)
		},
	}
	if render {
		c.Use = "render NAME DIR"
		c.Short = "Write the image's flattened root filesystem to DIR/rootfs and its manifest and config beside it"
		c.Long = `Render writes what 'image extract' writes into DIR/rootfs, and the image's
manifest and config as DIR/manifest.json and DIR/config.json (the OCI image
config). DIR must not exist or be empty.`
	}
	return c
}

// extractImage writes the image into a new directory beside dir, which
// only root can write, and renames it to dir at the end: someone who can
// write into an existing dir (an empty directory another user made in
// /tmp, say) cannot slip a link into it for skiff, running as root, to
// write through while it extracts; and dir never holds half an image. dir
// itself must be a new name or an empty directory, not a link.
func extractImage(s *store.Store, img *store.Image, dir string, render bool) error {
	dir = filepath.Clean(dir)
	switch fi, err := os.Lstat(dir); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; extract into a new or empty directory", dir)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory; extract into a new or empty directory", dir)
	default:
		if entries, err := os.ReadDir(dir); err != nil {
			return err
		} else if len(entries) > 0 {
			return fmt.Errorf("%s is not empty; extract into a new or empty directory", dir)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	rootfs := tmp
	if render {
		rootfs = filepath.Join(tmp, "rootfs")
		manifest, err := s.ManifestBytes(img)
		if err != nil {
			return err
		}
		config, err := s.ReadBlob(img.Manifest.Config.Digest, 8<<20)
		if err != nil {
			return err
		}
		if err := writeNew(filepath.Join(tmp, "manifest.json"), manifest); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(tmp, "config.json"), config); err != nil {
			return err
		}
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return err
		}
	}
	if err := layer.Flatten(rootfs, img.LayerDirs); err != nil {
		return err
	}
	// rename(2) replaces an empty directory, never a link or a directory
	// someone filled in the meantime (os.Rename refuses any directory).
	if err := unix.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the extracted image to %s: %w; extract into a new or empty directory", dir, err)
	}
	return nil
}

// writeNew creates path, which must not exist (not even as a link), and
// writes data.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newImageCatManifestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat-manifest NAME",
		Short: "Print an image's manifest as stored",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, img, err := lookupImage(g, args[0])
			if err != nil {
				return err
			}
			data, err := s.ManifestBytes(img)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}

func newImageVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify [NAME...]",
		Short: "Recompute the digest of every blob; remove corrupt ones and the images needing them",
		Long: `Verify recomputes the sha256 of every blob of the named images (of every
blob in the store when no NAME is given) and checks that their layers are
extracted. Each corrupt or missing entry is reported on stdout and removed,
with the images that need it, so that fetching them again repairs them; then
verify exits with status 125. It exits 0 when everything matches.

For each NAME given, the image's signature is also verified again where its
material can be found: a docker:// name's cosign signature in the registry,
for the stored manifest (or the index its tag still leads to it through),
with the keys trusted now. A registry that cannot be reached is reported but
does not fail verify; images from files are verified only when fetched.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore(g)
			if err != nil {
				return err
			}
			var ids []digest.Digest
			var imgs []*store.Image
			for _, name := range args {
				img, err := s.Lookup(name)
				if err != nil {
					return err
				}
				ids, imgs = append(ids, img.ID), append(imgs, img)
			}
			problems, err := s.Verify(ids)
			out := cmd.OutOrStdout()
			for _, p := range problems {
				fmt.Fprintf(out, "%s: %v; removed", p.What, p.Err)
				for _, id := range p.Images {
					fmt.Fprintf(out, " with image %s", id)
				}
				fmt.Fprintln(out)
			}
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("image store: %d corrupt entries removed; fetch the affected images again", len(problems))
			}
			fmt.Fprintln(out, "all blobs match their digests")
			refused, err := reverifyStored(cmd.Context(), g, out, imgs)
			if err == nil && refused > 0 {
				err = fmt.Errorf("%d image names failed signature re-verification; see above, and remove them with 'skiff image rm' or trust their signer with 'skiff trust'", refused)
			}
			return err
		},
	}
}

// lookupImage opens the store and finds the image a verb names.
func lookupImage(g *globals, name string) (*store.Store, *store.Image, error) {
	s, err := openStore(g)
	if err != nil {
		return nil, nil, err
	}
	img, err := s.Lookup(name)
	if err != nil {
		return nil, nil, err
	}
	return s, img, nil
}
