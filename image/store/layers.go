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
func (s *Store) PutLayer(diffID digest.Digest, r io.Reader) (string, error) {
	p, err := s.ExtractLayer(diffID, r)
	if err != nil {
		return "", err
	}
	return p.Commit()
}

// PendingLayer is a layer extracted into tmp/ and verified by its diffID,
// not yet in place: Commit puts it there, Discard removes it.
type PendingLayer struct {
	diffID     digest.Digest
	tmp, final string // tmp is "" when the store already has the layer
}

// ExtractLayer is PutLayer up to the rename: r can be a blob being
// downloaded, so that download and extraction overlap, and the caller
// commits the layer only once the blob's own digest has matched too.
func (s *Store) ExtractLayer(diffID digest.Digest, r io.Reader) (*PendingLayer, error) {
	final, ok, err := s.LayerDir(diffID)
	if err != nil {
		return nil, err
	}
	if ok {
		return &PendingLayer{diffID: diffID, final: final}, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-")
	if err != nil {
		return nil, err
	}
	p := &PendingLayer{diffID: diffID, tmp: tmp, final: final}
	if err := p.extract(r); err != nil {
		p.Discard()
		return nil, err
	}
	return p, nil
}

func (p *PendingLayer) extract(r io.Reader) error {
	if err := os.Chmod(p.tmp, 0o755); err != nil {
		return err
	}
	got, err := layer.Extract(p.tmp, r)
	if err != nil {
		return fmt.Errorf("layer %s: %w", p.diffID, err)
	}
	if got != p.diffID {
		return fmt.Errorf("layer %s: content has diffID %s", p.diffID, got)
	}
	if err := syncFS(p.tmp); err != nil {
		return fmt.Errorf("layer %s: %w", p.diffID, err)
	}
	return nil
}

// Commit renames the layer into place and returns its directory.
func (p *PendingLayer) Commit() (string, error) {
	if p.tmp == "" {
		return p.final, nil
	}
	defer p.Discard() // no-op after the rename
	err := os.Rename(p.tmp, p.final)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return p.final, nil // lost the race: the other copy is identical
	}
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", p.diffID, err)
	}
	return p.final, nil
}

// Discard removes the extracted layer (nothing once it is committed).
func (p *PendingLayer) Discard() {
	if p.tmp != "" {
		_ = os.RemoveAll(p.tmp)
	}
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
