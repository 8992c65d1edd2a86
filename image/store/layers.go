package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/image/layer"
)

// LayerDir returns the directory of the layer with the given diffID, and
// whether it has been extracted.
func (s *Store) LayerDir(diffID digest.Digest) (string, bool, error) {
	p, err := s.path("layers", diffID, "")
	if err != nil {
		return "", false, err
	}
	_, err = os.Stat(p)
	return p, err == nil, nil
}

// EnsureLayer makes sure the layer with diffID is extracted, extracting it
// from the stored blob if it is not, and returns its directory.
func (s *Store) EnsureLayer(blob, diffID digest.Digest) (string, error) {
	dir, ok, err := s.LayerDir(diffID)
	if err != nil || ok {
		return dir, err
	}
	f, err := s.OpenBlob(blob)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return s.PutLayer(diffID, f)
}

// PutLayer extracts the layer read from r (plain or gzip tar), which must
// have the given diffID, into tmp/, then renames it into place. If another
// extractor won the race, its directory is kept and this one discarded.
// r can be a blob being downloaded, so that download and extraction overlap.
func (s *Store) PutLayer(diffID digest.Digest, r io.Reader) (string, error) {
	final, ok, err := s.LayerDir(diffID)
	if err != nil || ok {
		return final, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	got, err := layer.Extract(tmp, r)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got != diffID {
		return "", fmt.Errorf("layer %s: content has diffID %s", diffID, got)
	}
	if err := syncFS(tmp); err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	err = os.Rename(tmp, final)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return final, nil // lost the race: the other copy is identical
	}
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	return final, nil
}

// syncFS flushes the filesystem holding dir, so that a layer directory
// renamed into place after a crash is complete.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
