package store

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ManifestBytes returns the image's manifest exactly as stored.
func (s *Store) ManifestBytes(img *Image) ([]byte, error) {
	return s.ReadBlob(img.ID, maxJSON)
}

// Export writes img to w as a tar of an OCI image layout (an oci-archive),
// its index.json naming it refName (none when empty).
func (s *Store) Export(img *Image, refName string, w io.Writer) error {
	manifest, err := s.ManifestBytes(img)
	if err != nil {
		return err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.ID, Size: int64(len(manifest))}
	if img.Manifest.MediaType != "" {
		desc.MediaType = img.Manifest.MediaType
	}
	if refName != "" {
		desc.Annotations = map[string]string{ocispec.AnnotationRefName: refName}
	}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}})
	if err != nil {
		return err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	if err := writeEntry(tw, ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	blobs := append([]digest.Digest{img.ID, img.Manifest.Config.Digest}, layerDigests(img.Manifest)...)
	seen := map[digest.Digest]bool{}
	for _, d := range blobs {
		if seen[d] {
			continue
		}
		seen[d] = true
		if err := s.exportBlob(tw, d); err != nil {
			return fmt.Errorf("export %s: %w", img.ID, err)
		}
	}
	if err := writeEntry(tw, "index.json", index); err != nil {
		return err
	}
	return tw.Close()
}

func layerDigests(m ocispec.Manifest) []digest.Digest {
	var ds []digest.Digest
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func (s *Store) exportBlob(tw *tar.Writer, d digest.Digest) error {
	f, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/" + d.Encoded(), Mode: 0o644, Size: fi.Size(), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
