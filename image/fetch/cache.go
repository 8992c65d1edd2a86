package fetch

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/atomicfile"
)

// The file-source cache remembers which image an archive file was imported
// as, keyed by its path and identity (size, mtime, inode), so that running an
// unchanged archive again costs a stat instead of a read of the whole file.

const sourceCacheFile = "sources.json"

type fileIdentity struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	Inode   uint64    `json:"inode"`
	Ref     string    `json:"ref"`
	ID      string    `json:"id"`
}

func identify(path string) (fileIdentity, bool) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return fileIdentity{}, false
	}
	id := fileIdentity{Size: st.Size(), ModTime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.Inode = sys.Ino
	}
	return id, true
}

func readSourceCache(s *store.Store) map[string]fileIdentity {
	c := map[string]fileIdentity{}
	if b, err := os.ReadFile(filepath.Join(s.Dir(), sourceCacheFile)); err == nil {
		_ = json.Unmarshal(b, &c) // a damaged cache only costs a re-import
	}
	return c
}

// cachedImport returns the image an unchanged archive was imported as, or nil.
func cachedImport(s *store.Store, ref reference.Reference) *store.Image {
	now, ok := identify(ref.Path)
	if !ok {
		return nil
	}
	was, ok := readSourceCache(s)[ref.Path]
	if !ok || was.Size != now.Size || !was.ModTime.Equal(now.ModTime) || was.Inode != now.Inode || was.Ref != ref.Ref {
		return nil
	}
	img, err := s.Lookup(was.ID)
	if err != nil {
		return nil
	}
	return img
}

// rememberImport records what the archive at ref.Path was imported as. Losing
// a race with another import only loses a cache entry.
func rememberImport(s *store.Store, ref reference.Reference, img *store.Image) error {
	id, ok := identify(ref.Path)
	if !ok {
		return nil
	}
	id.Ref, id.ID = ref.Ref, img.ID.String()
	c := readSourceCache(s)
	c[ref.Path] = id
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.Dir(), sourceCacheFile), b, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
