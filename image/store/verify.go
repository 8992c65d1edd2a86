package store

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/opencontainers/go-digest"
)

// ErrCorrupt is wrapped by the problems Verify reports.
var ErrCorrupt = errors.New("corrupt")

// Problem is a corrupt or missing store entry found by Verify, and the
// images that needed it (now removed).
type Problem struct {
	What   string // "blob sha256:…" or "layer sha256:…"
	Err    error
	Images []digest.Digest
}

// Verify recomputes the digest of every blob the images ids reference (of
// every blob in the store when ids is empty) and checks that their layers are
// extracted. It removes each corrupt blob and the records of the images that
// need it, so that fetching them again repairs them. Layer directories are
// checked for presence only: a diffID cannot be recomputed from a directory.
func (s *Store) Verify(ids []digest.Digest) ([]Problem, error) {
	unlock, err := s.exclusive()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all := len(ids) == 0
	if all {
		if ids, err = s.ids(); err != nil {
			return nil, err
		}
	}
	users := map[digest.Digest][]digest.Digest{} // blob → images
	var problems []Problem
	for _, id := range ids {
		rec, err := s.readRecord(id)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", id, err)
		}
		for _, b := range append([]digest.Digest{rec.ID, rec.Config}, rec.Layers...) {
			users[b] = append(users[b], id)
		}
		for _, d := range rec.DiffIDs {
			if _, ok, _ := s.LayerDir(d); !ok {
				problems = append(problems, Problem{What: "layer " + d.String(), Err: fmt.Errorf("%w: not extracted", ErrCorrupt), Images: []digest.Digest{id}})
			}
		}
	}
	blobs := slices.Collect(maps.Keys(users))
	if all {
		if blobs, err = s.digestsIn("blobs"); err != nil {
			return nil, err
		}
	}
	slices.Sort(blobs)
	for _, d := range blobs {
		if err := s.checkBlob(d); err != nil {
			problems = append(problems, Problem{What: "blob " + d.String(), Err: err, Images: users[d]})
		}
	}
	return problems, s.removeCorrupt(problems)
}

// checkBlob rehashes blob d; a missing blob is a problem too.
func (s *Store) checkBlob(d digest.Digest) error {
	f, err := s.OpenBlob(d)
	if errors.Is(err, ErrBlobNotFound) {
		return fmt.Errorf("%w: missing", ErrCorrupt)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := d.Algorithm().Hash()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return fmt.Errorf("%w: content has digest %s", ErrCorrupt, got)
	}
	return nil
}

// removeCorrupt removes the corrupt blobs and the images that need them.
func (s *Store) removeCorrupt(problems []Problem) error {
	gone := map[digest.Digest]bool{}
	for _, p := range problems {
		var d digest.Digest
		if _, err := fmt.Sscanf(p.What, "blob %s", &d); err == nil && d.Validate() == nil {
			path, _ := s.path("blobs", d, "")
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		for _, id := range p.Images {
			if gone[id] {
				continue
			}
			gone[id] = true
			if err := s.RemoveImage(id); err != nil && !errors.Is(err, ErrImageNotFound) {
				return err
			}
		}
	}
	return nil
}
