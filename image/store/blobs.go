package store

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/internal/directio"
)

// ErrBlobNotFound is returned for a blob the store does not have.
var ErrBlobNotFound = errors.New("blob not found")

// HasBlob reports whether the store holds the blob d.
func (s *Store) HasBlob(d digest.Digest) bool {
	p, err := s.path("blobs", d, "")
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// PutBlob stores the blob read from r, which must have digest d and, when
// size >= 0, that size. It returns at once, reading nothing, if the store
// already has d. The content is hashed while it is written to tmp/, synced,
// and renamed into place only if it matches.
func (s *Store) PutBlob(d digest.Digest, size int64, r io.Reader) error {
	return s.putBlob(d, size, r, true)
}

// PutVerifiedBlob is PutBlob for a reader that verifies the content itself:
// the Read that reaches its end must fail unless all that was read has digest
// d. go-containerregistry's blob readers do (they hash as they read), and a
// second hash of the same bytes was a sixth of a fetch's time. The size is
// still checked here, and as r is read to its end (PutBlob reads one byte
// past size), its verification always runs.
func (s *Store) PutVerifiedBlob(d digest.Digest, size int64, r io.Reader) error {
	if size < 0 {
		return fmt.Errorf("blob %s: a verified blob needs its size", d)
	}
	return s.putBlob(d, size, r, false)
}

// putBlob is PutBlob, and without verify PutVerifiedBlob.
func (s *Store) putBlob(d digest.Digest, size int64, r io.Reader, verify bool) error {
	final, err := s.path("blobs", d, "")
	if err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	defer f.Close()
	if size >= 0 {
		r = io.LimitReader(r, size+1)
	}
	w, h := io.Writer(f), hash.Hash(nil)
	var dw *directio.Writer
	if size >= directio.Chunk { // a layer's: around the page cache
		dw = directio.NewWriter(f)
		defer dw.Release()
		w = dw
	}
	if verify {
		h = d.Algorithm().Hash() // s.path accepted d: sha256
		w = io.MultiWriter(w, h)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: size is %d, expected %d", d, n, size)
	}
	if dw != nil {
		if err := dw.Finish(); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
	}
	if h != nil {
		if got := digest.NewDigest(d.Algorithm(), h); got != d {
			return fmt.Errorf("blob %s: content has digest %s", d, got)
		}
	}
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

// OpenBlob opens the blob d for reading.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	p, err := s.path("blobs", d, "")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, d)
	}
	return f, err
}

// ReadBlob returns the content of blob d, refusing blobs over max bytes
// (manifests and configs are small; a huge one is an attack or a mistake).
func (s *Store) ReadBlob(d digest.Digest, max int64) ([]byte, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("blob %s: larger than %d bytes", d, max)
	}
	return data, nil
}
