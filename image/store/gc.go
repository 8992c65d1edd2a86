package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// RemoveImage removes the image's record and every name that points at it.
// Its blobs and layers stay until Prune finds them unreferenced.
func (s *Store) RemoveImage(id digest.Digest) error {
	p, err := s.path("images", id, ".json")
	if err != nil {
		return err
	}
	err = s.withLock(func() error {
		if err := s.updateRefs(func(refs map[string]digest.Digest) {
			for name, target := range refs {
				if target == id {
					delete(refs, name)
				}
			}
		}); err != nil {
			return err
		}
		err := os.Remove(p)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrImageNotFound, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// ErrLastName is RemoveName's refusal to remove an image's last name.
var ErrLastName = errors.New("the image's last name")

// RemoveName removes one name of an image (podman's rmi of a tag), leaving
// the image and its other names. It refuses the image's last name with
// ErrLastName (remove the image with RemoveImage instead).
func (s *Store) RemoveName(name string) (digest.Digest, error) {
	var id digest.Digest
	err := s.withLock(func() error {
		refs, err := s.readRefs()
		if err != nil {
			return err
		}
		target, ok := refs[name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrImageNotFound, name)
		}
		id = target
		others := 0
		for n, t := range refs {
			if t == id && n != name {
				others++
			}
		}
		if others == 0 {
			return ErrLastName
		}
		return s.updateRefs(func(refs map[string]digest.Digest) { delete(refs, name) })
	})
	if err != nil {
		return id, fmt.Errorf("remove name %q: %w", name, err)
	}
	return id, nil
}

// References are the blobs and extracted layers that image records name.
type References struct {
	Blobs  map[digest.Digest]bool
	Layers map[digest.Digest]bool // by diffID
}

// References reads every image record and returns what they reference.
func (s *Store) References() (References, error) {
	refs := References{Blobs: map[digest.Digest]bool{}, Layers: map[digest.Digest]bool{}}
	ids, err := s.ids()
	if err != nil {
		return refs, err
	}
	for _, id := range ids {
		rec, err := s.readRecord(id)
		if errors.Is(err, ErrImageNotFound) {
			continue
		}
		if err != nil {
			return refs, err
		}
		refs.Blobs[rec.ID], refs.Blobs[rec.Config] = true, true
		for _, l := range rec.Layers {
			refs.Blobs[l] = true
		}
		for _, d := range rec.DiffIDs {
			refs.Layers[d] = true
		}
	}
	return refs, nil
}

// PruneReport says what Prune removed.
type PruneReport struct {
	Blobs, Layers, Tmp int
	Bytes              int64 // of blobs
}

// Prune removes the blobs and layer directories that no image record
// references, except the layer directories in keep (absolute paths, e.g.
// those pods are using), and entries of tmp/ older than tmpAge. It waits for
// fetches in progress to finish (see Hold) and keeps new ones waiting.
func (s *Store) Prune(keep map[string]bool, tmpAge time.Duration) (PruneReport, error) {
	unlock, err := s.exclusive()
	if err != nil {
		return PruneReport{}, err
	}
	defer unlock()
	return s.PruneExclusive(keep, tmpAge)
}

// PruneExclusive is Prune for a caller that holds Exclusive (and decided
// under it what to keep). No fetch runs then, so every entry of tmp/ is the
// leftover of one that was killed: tmpAge may be zero.
func (s *Store) PruneExclusive(keep map[string]bool, tmpAge time.Duration) (PruneReport, error) {
	var r PruneReport
	refs, err := s.References()
	if err != nil {
		return r, fmt.Errorf("prune: %w", err)
	}
	blobs, err := s.digestsIn("blobs")
	if err != nil {
		return r, fmt.Errorf("prune: %w", err)
	}
	for _, d := range blobs {
		if refs.Blobs[d] {
			continue
		}
		p, _ := s.path("blobs", d, "")
		if fi, err := os.Stat(p); err == nil {
			r.Bytes += fi.Size()
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return r, fmt.Errorf("prune: %w", err)
		}
		r.Blobs++
	}
	layers, err := s.digestsIn("layers")
	if err != nil {
		return r, fmt.Errorf("prune: %w", err)
	}
	for _, d := range layers {
		dir, _, _ := s.LayerDir(d)
		if refs.Layers[d] || keep[dir] {
			continue
		}
		if err := s.removeDir(dir); err != nil {
			return r, fmt.Errorf("prune: layer %s: %w", d, err)
		}
		r.Layers++
	}
	n, err := s.cleanTmp(tmpAge)
	r.Tmp = n
	if err != nil {
		return r, fmt.Errorf("prune: %w", err)
	}
	return r, nil
}

// digestsIn lists the sha256 objects under kind ("blobs", "layers").
func (s *Store) digestsIn(kind string) ([]digest.Digest, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, kind, "sha256"))
	if err != nil {
		return nil, err
	}
	var ds []digest.Digest
	for _, e := range entries {
		if d := digest.NewDigestFromEncoded(digest.SHA256, e.Name()); d.Validate() == nil {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// removeDir moves dir into tmp/ and removes it there, so that a crash
// half-way never leaves a partial directory under its final name.
func (s *Store) removeDir(dir string) error {
	trash, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "trash-")
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(trash, "d")); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(trash)
		return err
	}
	return os.RemoveAll(trash)
}

// cleanTmp removes entries of tmp/ last modified more than age ago: the
// leftovers of fetches that were killed.
func (s *Store) cleanTmp(age time.Duration) (int, error) {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
