package fetch

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// maxJSON bounds index.json, manifests and configs.
const maxJSON = 8 << 20

// maxIndexDepth bounds nested indexes.
const maxIndexDepth = 4

func importLayoutDir(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	src, err := openDirSource(ref.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return importLayout(ctx, s, src, ref, opts.Verification)
}

func importLayoutArchive(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	src, err := openArchiveSource(ref.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return importLayout(ctx, s, src, ref, opts.Verification)
}

// layoutDescriptor is the descriptor the layout's index.json gives the image
// ref.Ref selects.
func layoutDescriptor(src layoutSource, ref reference.Reference) (ocispec.Descriptor, error) {
	data, err := readFile(src, "index.json")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	idx, err := ParseIndex(data)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("index.json: %w", err)
	}
	return selectRef(idx, ref.Ref)
}

// layoutNames returns the ref name the layout's index gives the image
// ref.Ref selects (none or one).
func layoutNames(src layoutSource, ref reference.Reference) ([]string, error) {
	desc, err := layoutDescriptor(src, ref)
	if err != nil {
		return nil, err
	}
	if n := desc.Annotations[ocispec.AnnotationRefName]; n != "" {
		return []string{n}, nil
	}
	return nil, nil
}

// importLayout imports the image ref.Ref names from an image layout,
// recording v as how it was verified.
func importLayout(ctx context.Context, s *store.Store, src layoutSource, ref reference.Reference, v store.Verification) (*store.Image, error) {
	desc, err := layoutDescriptor(src, ref)
	if err != nil {
		return nil, err
	}
	refName := desc.Annotations[ocispec.AnnotationRefName]
	desc, m, err := resolveManifest(s, src, desc, 0)
	if err != nil {
		return nil, err
	}
	if err := copyImage(ctx, s, src, m); err != nil {
		return nil, err
	}
	names := append([]string{ref.String()}, contentNames([]string{refName})...)
	return s.AddImage(desc.Digest, names, v)
}

func readFile(src layoutSource, name string) ([]byte, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > maxJSON {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxJSON)
	}
	return data, nil
}

// selectRef picks the manifest whose ref name is ref, or the only one.
func selectRef(idx ocispec.Index, ref string) (ocispec.Descriptor, error) {
	var refs []string
	for _, d := range idx.Manifests {
		name := d.Annotations[ocispec.AnnotationRefName]
		if ref != "" && name == ref {
			return d, nil
		}
		if name != "" {
			refs = append(refs, name)
		}
	}
	if ref == "" && len(idx.Manifests) == 1 {
		return idx.Manifests[0], nil
	}
	available := "available: " + strings.Join(refs, ", ")
	if len(refs) == 0 {
		available = "the index names none"
	}
	switch {
	case len(idx.Manifests) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("index.json lists no images")
	case ref == "":
		return ocispec.Descriptor{}, fmt.Errorf("index.json lists %d images, add :REF to choose one (%s)", len(idx.Manifests), available)
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image named %q in index.json (%s)", ref, available)
}

// resolveManifest copies the manifest blob desc names into the store,
// following indexes to this platform's manifest, and parses it.
func resolveManifest(s *store.Store, src layoutSource, desc ocispec.Descriptor, depth int) (ocispec.Descriptor, ocispec.Manifest, error) {
	var m ocispec.Manifest
	if depth > maxIndexDepth {
		return desc, m, fmt.Errorf("indexes nested deeper than %d", maxIndexDepth)
	}
	if err := copyBlob(s, src, desc); err != nil {
		return desc, m, err
	}
	data, err := s.ReadBlob(desc.Digest, maxJSON)
	if err != nil {
		return desc, m, err
	}
	switch {
	case isManifest(desc.MediaType):
		m, err = ParseManifest(data)
		if err != nil {
			return desc, m, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		return desc, m, nil
	case isIndex(desc.MediaType):
		idx, err := ParseIndex(data)
		if err != nil {
			return desc, m, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		sub, err := selectPlatform(idx)
		if err != nil {
			return desc, m, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		return resolveManifest(s, src, sub, depth+1)
	}
	return desc, m, fmt.Errorf("%s: %w: %q", desc.Digest, ErrUnsupportedMediaType, desc.MediaType)
}

// selectPlatform picks the manifest for linux and this architecture.
func selectPlatform(idx ocispec.Index) (ocispec.Descriptor, error) {
	var seen []string
	for _, d := range idx.Manifests {
		if p := d.Platform; p != nil {
			if p.OS == "linux" && p.Architecture == runtime.GOARCH {
				return d, nil
			}
			seen = append(seen, p.OS+"/"+p.Architecture)
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no manifest for linux/%s (has %s)", runtime.GOARCH, strings.Join(slices.Compact(seen), ", "))
}

// copyImage stores the config and layer blobs of m and extracts each layer
// not extracted yet, a layer per CPU at once, each while its blob is copied
// (storeStreaming, as from a registry). A layer already extracted is
// not copied at all.
func copyImage(ctx context.Context, s *store.Store, src layoutSource, m ocispec.Manifest) error {
	if err := copyBlob(s, src, m.Config); err != nil {
		return err
	}
	data, err := s.ReadBlob(m.Config.Digest, maxJSON)
	if err != nil {
		return err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config %s lists %d diffIDs for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, runtime.NumCPU()))
	for i, l := range m.Layers {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			return copyLayer(s, src, l, cfg.RootFS.DiffIDs[i])
		})
	}
	return g.Wait()
}

// copyLayer stores the layer blob l and extracts it, unless the store has
// the layer extracted; from the store's blob if it has that.
func copyLayer(s *store.Store, src layoutSource, l ocispec.Descriptor, diffID digest.Digest) error {
	if _, ok, err := s.LayerDir(diffID); err != nil || ok {
		return err
	}
	if s.HasBlob(l.Digest) {
		_, err := s.EnsureLayer(l.Digest, diffID)
		return err
	}
	f, err := openBlob(src, l)
	if err != nil {
		return err
	}
	defer f.Close()
	return storeStreaming(s, l, diffID, f, true)
}

// copyBlob copies the blob desc names from the layout into the store,
// verifying digest and size, unless the store has it already.
func copyBlob(s *store.Store, src layoutSource, desc ocispec.Descriptor) error {
	if s.HasBlob(desc.Digest) {
		return nil
	}
	f, err := openBlob(src, desc)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.PutBlob(desc.Digest, desc.Size, f)
}

// openBlob opens the layout's blob desc names.
func openBlob(src layoutSource, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	return src.Open("blobs/" + desc.Digest.Algorithm().String() + "/" + desc.Digest.Encoded())
}
