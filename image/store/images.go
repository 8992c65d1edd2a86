package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-project/skiff/internal/atomicfile"
)

// Errors returned by Lookup and Touch, wrapped with the name asked for.
var (
	ErrImageNotFound = errors.New("image not found")
	ErrAmbiguousID   = errors.New("ambiguous image ID prefix")
)

// maxJSON bounds manifests, configs and records read into memory.
const maxJSON = 8 << 20

// minPrefix is the shortest ID prefix Lookup accepts.
const minPrefix = 4

// Image is an image in the store, ready to be rendered: its layers are
// extracted, lowest first.
type Image struct {
	ID          digest.Digest // manifest digest
	Names       []string
	Manifest    ocispec.Manifest
	Config      ocispec.Image
	Annotations map[string]string // manifest annotations
	LayerDirs   []string          // absolute, lowest first
	Size        int64             // manifest, config and compressed layers
	Imported    time.Time
	LastUsed    time.Time
	// Verified says, per name, how the image came to be stored under it;
	// a name imported before skiff kept these has none.
	Verified map[string]Verification
}

// record is what images/sha256/ID.json holds. Names live in refs.json only.
type record struct {
	ID          digest.Digest     `json:"id"`
	Config      digest.Digest     `json:"config"`
	Layers      []digest.Digest   `json:"layers"`  // blobs, lowest first
	DiffIDs     []digest.Digest   `json:"diffIDs"` // extracted layers, lowest first
	Annotations map[string]string `json:"annotations,omitempty"`
	Size        int64             `json:"size"`
	Imported    time.Time         `json:"imported"`
	LastUsed    time.Time         `json:"lastUsed"`
	// Verified is how the image came to be stored under each name.
	Verified map[string]Verification `json:"verified,omitempty"`
}

// AddImage records the image whose manifest is the stored blob id and gives
// it names (taking each name from any image that had it), each verified as v
// says. The manifest and config blobs must be stored and every layer
// extracted.
func (s *Store) AddImage(id digest.Digest, names []string, v Verification) (*Image, error) {
	rec, err := s.newRecord(id)
	if err != nil {
		return nil, fmt.Errorf("add image %s: %w", id, err)
	}
	recPath, err := s.path("images", id, ".json")
	if err != nil {
		return nil, err
	}
	err = s.withLock(func() error {
		refs, err := s.readRefs()
		if err != nil {
			return err
		}
		if old, err := s.readRecord(id); err == nil {
			rec.Imported, rec.LastUsed = old.Imported, old.LastUsed
			for n, ov := range old.Verified {
				if refs[n] == id { // a name another image took keeps no record here
					rec.Verified[n] = ov
				}
			}
		}
		if v.Kind == "" {
			v.Kind = Unverified
		}
		if v.Time.IsZero() {
			v.Time = time.Now().UTC()
		}
		for _, n := range names {
			rec.Verified[n] = v
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(recPath, data, 0o644); err != nil {
			return err
		}
		return s.updateRefs(func(refs map[string]digest.Digest) {
			for _, n := range names {
				refs[n] = id
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("add image %s: %w", id, err)
	}
	return s.load(id)
}

func (s *Store) newRecord(id digest.Digest) (*record, error) {
	m, cfg, mSize, err := s.readManifestConfig(id)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config lists %d diffIDs for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	now := time.Now().UTC()
	rec := &record{ID: id, Config: m.Config.Digest, DiffIDs: cfg.RootFS.DiffIDs,
		Annotations: m.Annotations, Size: mSize + m.Config.Size, Imported: now, LastUsed: now,
		Verified: map[string]Verification{}}
	for i, l := range m.Layers {
		if _, ok, err := s.LayerDir(rec.DiffIDs[i]); err != nil || !ok {
			return nil, fmt.Errorf("layer %s is not extracted", rec.DiffIDs[i])
		}
		rec.Layers = append(rec.Layers, l.Digest)
		rec.Size += l.Size
	}
	return rec, nil
}

func (s *Store) readManifestConfig(id digest.Digest) (ocispec.Manifest, ocispec.Image, int64, error) {
	var m ocispec.Manifest
	var cfg ocispec.Image
	data, err := s.ReadBlob(id, maxJSON)
	if err != nil {
		return m, cfg, 0, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, cfg, 0, fmt.Errorf("manifest %s: %w", id, err)
	}
	cdata, err := s.ReadBlob(m.Config.Digest, maxJSON)
	if err != nil {
		return m, cfg, 0, err
	}
	if err := json.Unmarshal(cdata, &cfg); err != nil {
		return m, cfg, 0, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	return m, cfg, int64(len(data)), nil
}

func (s *Store) readRecord(id digest.Digest) (*record, error) {
	p, err := s.path("images", id, ".json")
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrImageNotFound
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("image record %s: %w", p, err)
	}
	return &rec, nil
}

// load builds the Image for id from its record, blobs and refs.
func (s *Store) load(id digest.Digest) (*Image, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	return s.loadWithRefs(id, refs)
}

func (s *Store) loadWithRefs(id digest.Digest, refs map[string]digest.Digest) (*Image, error) {
	rec, err := s.readRecord(id)
	if err != nil {
		return nil, err
	}
	m, cfg, _, err := s.readManifestConfig(id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	img := &Image{ID: id, Manifest: m, Config: cfg, Annotations: rec.Annotations,
		Size: rec.Size, Imported: rec.Imported, LastUsed: rec.LastUsed, Verified: map[string]Verification{}}
	for name, target := range refs {
		if target == id {
			img.Names = append(img.Names, name)
			if v, ok := rec.Verified[name]; ok {
				img.Verified[name] = v
			}
		}
	}
	slices.Sort(img.Names)
	for _, d := range rec.DiffIDs {
		dir, _, err := s.LayerDir(d)
		if err != nil {
			return nil, err
		}
		img.LayerDirs = append(img.LayerDirs, dir)
	}
	return img, nil
}

// Lookup finds an image by exact name, by full ID ("sha256:HEX") or by an
// unambiguous prefix of at least 4 hex digits of its ID (with or without
// "sha256:").
func (s *Store) Lookup(nameOrID string) (*Image, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	if id, ok := refs[nameOrID]; ok {
		return s.loadWithRefs(id, refs)
	}
	id, err := s.resolveID(nameOrID)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", nameOrID, err)
	}
	img, err := s.loadWithRefs(id, refs)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", nameOrID, err)
	}
	return img, nil
}

func (s *Store) resolveID(nameOrID string) (digest.Digest, error) {
	prefix := strings.TrimPrefix(nameOrID, digest.SHA256.String()+":")
	if len(prefix) > 64 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return "", ErrImageNotFound
	}
	if len(prefix) < minPrefix {
		return "", fmt.Errorf("%w: no image has this name, and an ID prefix needs at least %d hex digits", ErrImageNotFound, minPrefix)
	}
	ids, err := s.ids()
	if err != nil {
		return "", err
	}
	var found []digest.Digest
	for _, id := range ids {
		if strings.HasPrefix(id.Encoded(), prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", ErrImageNotFound
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: matches %d images", ErrAmbiguousID, len(found))
}

// ids lists the IDs of all recorded images.
func (s *Store) ids() ([]digest.Digest, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "images", "sha256"))
	if err != nil {
		return nil, err
	}
	var ids []digest.Digest
	for _, e := range entries {
		hex, ok := strings.CutSuffix(e.Name(), ".json")
		if d := digest.NewDigestFromEncoded(digest.SHA256, hex); ok && d.Validate() == nil {
			ids = append(ids, d)
		}
	}
	return ids, nil
}

// List returns every image in the store.
func (s *Store) List() ([]*Image, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var imgs []*Image
	for _, id := range ids {
		img, err := s.loadWithRefs(id, refs)
		if errors.Is(err, ErrImageNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}

// Touch sets the image's last-used time to now.
func (s *Store) Touch(id digest.Digest) error {
	p, err := s.path("images", id, ".json")
	if err != nil {
		return err
	}
	err = s.withLock(func() error {
		rec, err := s.readRecord(id)
		if err != nil {
			return err
		}
		rec.LastUsed = time.Now().UTC()
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return atomicfile.Write(p, data, 0o644)
	})
	if err != nil {
		return fmt.Errorf("touch image %s: %w", id, err)
	}
	return nil
}
