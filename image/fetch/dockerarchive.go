package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// dockerArchiveEntry is one image of a "docker save" manifest.json.
type dockerArchiveEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// importDockerArchive imports an image from "docker save" (or "podman save
// --format docker-archive", skopeo's docker-archive:) output. The archive has
// no manifest in the distribution sense: skiff writes an OCI manifest for the
// archive's config and layers, so the image ID is skiff's own.
func importDockerArchive(ctx context.Context, s *store.Store, ref reference.Reference, opts Options) (*store.Image, error) {
	src, err := openArchiveSource(ref.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return importDockerFrom(ctx, s, src, ref, opts.Verification)
}

// dockerEntry reads the archive's manifest.json and picks the image ref.Ref
// names (or the only one).
func dockerEntry(src *archiveSource, ref reference.Reference) (dockerArchiveEntry, error) {
	data, err := readFile(src, "manifest.json")
	if err != nil {
		return dockerArchiveEntry{}, err
	}
	var entries []dockerArchiveEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return dockerArchiveEntry{}, fmt.Errorf("manifest.json: %w", err)
	}
	return selectDockerEntry(entries, ref.Ref)
}

// importDockerFrom imports the image ref.Ref names from the docker archive
// src, recording v as how it was verified.
func importDockerFrom(ctx context.Context, s *store.Store, src *archiveSource, ref reference.Reference, v store.Verification) (*store.Image, error) {
	e, err := dockerEntry(src, ref)
	if err != nil {
		return nil, err
	}
	cdata, err := readFile(src, e.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(cdata)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", e.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
		return nil, fmt.Errorf("config %s lists %d diffIDs for %d layers", e.Config, len(cfg.RootFS.DiffIDs), len(e.Layers))
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cdata), Size: int64(len(cdata))}}
	if err := s.PutBlob(m.Config.Digest, m.Config.Size, bytes.NewReader(cdata)); err != nil {
		return nil, err
	}
	m.Layers = make([]ocispec.Descriptor, len(e.Layers))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, name := range e.Layers {
		g.Go(func() error {
			d, err := importArchiveLayer(s, src, name, cfg.RootFS.DiffIDs[i])
			if err != nil {
				return fmt.Errorf("layer %s: %w", name, err)
			}
			m.Layers[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	mdata, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	id := digest.FromBytes(mdata)
	if err := s.PutBlob(id, int64(len(mdata)), bytes.NewReader(mdata)); err != nil {
		return nil, err
	}
	return s.AddImage(id, append([]string{ref.String()}, contentNames(e.RepoTags)...), v)
}

func selectDockerEntry(entries []dockerArchiveEntry, ref string) (dockerArchiveEntry, error) {
	var tags []string
	for _, e := range entries {
		for _, t := range e.RepoTags {
			if ref != "" && (t == ref || strings.TrimPrefix(t, "docker.io/library/") == ref || strings.TrimPrefix(t, "docker.io/") == ref) {
				return e, nil
			}
			tags = append(tags, t)
		}
	}
	switch {
	case len(entries) == 0:
		return dockerArchiveEntry{}, fmt.Errorf("manifest.json lists no images")
	case ref == "" && len(entries) == 1:
		return entries[0], nil
	case ref == "":
		return dockerArchiveEntry{}, fmt.Errorf("manifest.json lists %d images, add :REF to choose one (available: %s)", len(entries), strings.Join(tags, ", "))
	}
	return dockerArchiveEntry{}, fmt.Errorf("no image tagged %q in manifest.json (available: %s)", ref, strings.Join(tags, ", "))
}

// importArchiveLayer stores and extracts one layer file of the archive and
// describes it. An uncompressed layer's digest is its diffID, checked while
// it streams; a compressed one is hashed first.
func importArchiveLayer(s *store.Store, src *archiveSource, name string, diffID digest.Digest) (ocispec.Descriptor, error) {
	sr := src.section(name)
	if sr == nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: no such file in the archive", name)
	}
	var magic [4]byte
	n, _ := sr.ReadAt(magic[:], 0)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: sr.Size()}
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		desc.MediaType = ocispec.MediaTypeImageLayerGzip
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		desc.MediaType = ocispec.MediaTypeImageLayerZstd
	}
	if desc.MediaType != ocispec.MediaTypeImageLayer {
		h := digest.SHA256.Digester()
		if _, err := io.Copy(h.Hash(), io.NewSectionReader(sr, 0, sr.Size())); err != nil {
			return desc, err
		}
		desc.Digest = h.Digest()
	}
	unlock, err := s.LockBlob(desc.Digest)
	if err != nil {
		return desc, err
	}
	defer unlock()
	_, extracted, err := s.LayerDir(diffID)
	if err != nil {
		return desc, err
	}
	if s.HasBlob(desc.Digest) {
		if !extracted {
			_, err = s.EnsureLayer(desc.Digest, diffID)
		}
		return desc, err
	}
	return desc, storeStreaming(s, desc, diffID, io.NewSectionReader(sr, 0, sr.Size()), !extracted)
}
