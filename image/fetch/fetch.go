// Package fetch brings images into the store from their sources. Import
// picks the transport's importer from an explicit table; today that is the
// OCI image layout, as a directory (oci:DIR[:REF]) or as a tar archive
// (oci-archive:FILE[:REF]). Both read the layout's index.json, choose a
// manifest by ref name, follow a nested index to this platform, copy and
// verify the blobs into the store, extract each layer once, and record the
// image under its names. An archive that has not changed since it was last
// imported is not read again (see cache.go).
package fetch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// ErrUnsupportedTransport is returned for references that parse but that
// skiff cannot fetch yet.
var ErrUnsupportedTransport = errors.New("transport is not supported yet")

type importer func(ctx context.Context, s *store.Store, ref reference.Reference) (*store.Image, error)

// importers maps each implemented transport to its importer.
var importers = map[reference.Transport]importer{
	reference.OCI:        importLayoutDir,
	reference.OCIArchive: importLayoutArchive,
}

// Import fetches the image ref names into s and returns it. Errors name the
// source, e.g. "oci-archive:/x/bb.tar: index.json: unexpected end of JSON input".
func Import(ctx context.Context, s *store.Store, ref reference.Reference) (*store.Image, error) {
	imp, ok := importers[ref.Transport]
	if !ok {
		return nil, fmt.Errorf("%s: %q: %w", ref, ref.Transport, ErrUnsupportedTransport)
	}
	if ref.Path != "" {
		abs, err := filepath.Abs(ref.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		ref.Path = abs
	}
	if ref.Transport == reference.OCIArchive {
		if img := cachedImport(s, ref); img != nil {
			return img, nil
		}
	}
	img, err := imp(ctx, s, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if ref.Transport == reference.OCIArchive {
		if err := rememberImport(s, ref, img); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	return img, nil
}
