// Package store is skiff's content-addressed image store. Its directory
// (stage0 uses DATA_DIR/images) holds:
//
//	oci-layout, blobs/sha256/HEX   blobs, as in an OCI image layout
//	layers/sha256/DIFFID/          each layer extracted once, overlayfs whiteouts
//	images/sha256/MANIFEST.json    one record per image (the manifest digest is its ID)
//	refs.json                      image names → IDs
//	lock                           flock guarding records and refs
//	gc.lock                        shared by fetches (Hold), exclusive for Prune and Verify
//	locks/sha256/HEX               one flock per blob, so a blob is downloaded once (LockBlob)
//	tmp/                           blobs and layers being written
//
// The store's directory is mode 0700 (Open narrows a wider one): layers keep
// their setuid files and device nodes, which no other user may reach.
//
// Blobs and layers are written under tmp/ and renamed into place once
// verified, so a name always matches its content; whoever loses a race to
// rename discards their copy. Fetchers Hold the store and use the primitives
// LockBlob, PutBlob, PutLayer and EnsureLayer, then AddImage, which records
// per name how the image was verified (Verification); an image is handed out
// to be run through Use, which asks a Gate (image/verify's policy) whether
// that record will do. stage0 uses Lookup, List and Touch, and for the image
// verbs RemoveImage, Prune, Verify,
// and Export. Prune removes only what no image record references and
// no Hold protects, so a crash or a kill at any point leaves a store whose
// names all match their content.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/privdir"
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
	if _, err := privdir.Ensure(abs, 0o700); err != nil {
		return nil, fmt.Errorf("image store %s: %w", abs, err)
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "images/sha256", "locks/sha256", "tmp"} {
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
	unlock, err := flock(filepath.Join(s.dir, "lock"), unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("lock image store: %w", err)
	}
	defer unlock()
	return fn()
}

// flock opens (creating) the file at p and locks it with how.
func flock(p string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// Hold keeps Prune and Verify away until release is called: a fetch holds
// the store while it writes blobs and layers that no image record names yet.
// Holds are shared; any number of fetches run at once.
func (s *Store) Hold() (release func(), err error) {
	release, err = flock(filepath.Join(s.dir, "gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("hold image store: %w", err)
	}
	return release, nil
}

// Exclusive waits for every Hold to be released (fetches, and runs until
// their pod's manifest names its images) and keeps new ones out until unlock
// is called: what image gc and image rm decide under it cannot race a fetch
// or a run.
func (s *Store) Exclusive() (unlock func(), err error) { return s.exclusive() }

// exclusive: see Exclusive.
func (s *Store) exclusive() (unlock func(), err error) {
	unlock, err = flock(filepath.Join(s.dir, "gc.lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock image store for gc: %w", err)
	}
	return unlock, nil
}

// LockBlob takes the blob's own lock, waiting while another process or
// goroutine holds it, so that a blob wanted by two fetches at once is
// downloaded once: the second finds it stored when it gets the lock.
func (s *Store) LockBlob(d digest.Digest) (unlock func(), err error) {
	p, err := s.path("locks", d, "")
	if err != nil {
		return nil, err
	}
	unlock, err = flock(p, unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock blob %s: %w", d, err)
	}
	return unlock, nil
}
