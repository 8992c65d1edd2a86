package fetch

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker image manifest v2 schema 2 media types, accepted beside OCI ones.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// ErrUnsupportedMediaType is returned for manifests, configs or layers whose
// media type skiff does not handle.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == dockerManifestList }

func isManifest(mt string) bool { return mt == ocispec.MediaTypeImageManifest || mt == dockerManifest }

// checkLayerType accepts plain, gzip and zstd layers.
func checkLayerType(mt string) error {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, dockerLayer, ocispec.MediaTypeImageLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still found in images
		ocispec.MediaTypeImageLayerNonDistributableZstd, dockerForeignLayer: //nolint:staticcheck // still found in images
		return nil
	}
	return fmt.Errorf("%w: layer %q", ErrUnsupportedMediaType, mt)
}

func checkDescriptor(what string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: digest %q: %w", what, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s %s: negative size", what, d.Digest)
	}
	return nil
}

// ParseIndex parses an image index (index.json or a nested index).
func ParseIndex(data []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, err
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("schemaVersion %d, want 2", idx.SchemaVersion)
	}
	if idx.MediaType != "" && !isIndex(idx.MediaType) {
		return idx, fmt.Errorf("%w: index %q", ErrUnsupportedMediaType, idx.MediaType)
	}
	for _, d := range idx.Manifests {
		if err := checkDescriptor("manifest", d); err != nil {
			return idx, err
		}
	}
	return idx, nil
}

// ParseManifest parses an image manifest, OCI or Docker v2 schema 2, and
// checks that skiff can handle its config and layers.
func ParseManifest(data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, err
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && !isManifest(m.MediaType) {
		return m, fmt.Errorf("%w: manifest %q", ErrUnsupportedMediaType, m.MediaType)
	}
	if mt := m.Config.MediaType; mt != ocispec.MediaTypeImageConfig && mt != dockerConfig {
		return m, fmt.Errorf("%w: config %q", ErrUnsupportedMediaType, mt)
	}
	if err := checkDescriptor("config", m.Config); err != nil {
		return m, err
	}
	for _, l := range m.Layers {
		if err := checkLayerType(l.MediaType); err != nil {
			return m, err
		}
		if err := checkDescriptor("layer", l); err != nil {
			return m, err
		}
	}
	return m, nil
}

// ParseConfig parses an image config and checks its layer diffIDs.
func ParseConfig(data []byte) (ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(data, &c); err != nil {
		return c, err
	}
	if c.RootFS.Type != "layers" {
		return c, fmt.Errorf("rootfs type %q, want \"layers\"", c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return c, fmt.Errorf("diffID %q: not a sha256 digest", d)
		}
	}
	return c, nil
}
