// Package store is skiff's content-addressed image store. Its directory
// (stage0 uses DATA_DIR/images) holds:
//
//	oci-layout, blobs/sha256/HEX   blobs, as in an OCI image layout
//	layers/sha256/DIFFID/          each layer extracted once, overlayfs whiteouts
//	images/sha256/MANIFEST.json    one record per image (the manifest digest is its ID)
//	refs.json                      image names → IDs
//	lock                           flock guarding records and refs
//	tmp/                           blobs and layers being written
//
// Blobs and layers are written under tmp/ and renamed into place once
// verified, so a name always matches its content; whoever loses a race to
// rename discards their copy. Fetchers use the primitives PutBlob, PutLayer
// and EnsureLayer, then AddImage; stage0 uses Lookup, List and Touch.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Store is an image store rooted at a directory. It is safe for concurrent
// use by goroutines and by processes sharing the directory.
type Store struct {
	dir string
}

// Open opens the store in dir, creating its layout if needed.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	s := &Store{dir: abs}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "images/sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("image store %s: %w", abs, err)
		}
	}
	layout := filepath.Join(abs, "oci-layout")
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(layout, []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return nil, fmt.Errorf("image store %s: %w", abs, err)
		}
	}
	return s, nil
}

// Dir returns the store's absolute directory.
func (s *Store) Dir() string { return s.dir }

// path returns where the object with digest d lives under kind
// ("blobs", "layers", "images"), refusing digests that are not sha256.
func (s *Store) path(kind string, d digest.Digest, suffix string) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("digest %s: only sha256 is supported", d)
	}
	return filepath.Join(s.dir, kind, "sha256", d.Encoded()+suffix), nil
}

// withLock runs fn holding the store's exclusive lock.
func (s *Store) withLock(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock image store: %w", err)
	}
	return fn()
}
