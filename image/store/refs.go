package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/internal/atomicfile"
)

// refsFile is the on-disk form of refs.json.
type refsFile struct {
	Names map[string]digest.Digest `json:"names"`
}

func (s *Store) refsPath() string { return filepath.Join(s.dir, "refs.json") }

// readRefs reads refs.json; it needs no lock since the file is replaced
// atomically.
func (s *Store) readRefs() (map[string]digest.Digest, error) {
	data, err := os.ReadFile(s.refsPath())
	if errors.Is(err, os.ErrNotExist) {
		return map[string]digest.Digest{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f refsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", s.refsPath(), err)
	}
	if f.Names == nil {
		f.Names = map[string]digest.Digest{}
	}
	return f.Names, nil
}

// updateRefs applies change to the refs; the caller holds the lock.
func (s *Store) updateRefs(change func(map[string]digest.Digest)) error {
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	change(refs)
	data, err := json.MarshalIndent(refsFile{Names: refs}, "", "\t")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.refsPath(), data, 0o644)
}
