package fetch

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
)

// layoutSource reads files of an OCI image layout by their slash-separated
// name inside the layout ("index.json", "blobs/sha256/HEX").
type layoutSource interface {
	Open(name string) (io.ReadCloser, error)
	Close() error
}

// dirSource is a layout directory, read through os.Root so that symlinks in
// the layout cannot lead outside it.
type dirSource struct{ root *os.Root }

func openDirSource(dir string) (*dirSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &dirSource{root}, nil
}

func (d *dirSource) Open(name string) (io.ReadCloser, error) { return d.root.Open(name) }
func (d *dirSource) Close() error                            { return d.root.Close() }

// archiveSource is a tar of a layout (or "docker save" output). Opening it
// by path reads only the tar headers (seeking over the content), noting where
// each file's bytes are; files are then read in place, so a large archive is
// neither extracted nor read twice. An archive read for verification
// (ReadArchive, pinned.go) is instead read once, start to end, and keeps the
// small files it met (pinned): then only pinned files and content-addressed
// blobs, checked against their digests, can be opened.
type archiveSource struct {
	f      *os.File
	files  map[string]*io.SectionReader
	pinned map[string][]byte // nil unless the archive was read for verification
}

func openArchiveSource(file string) (*archiveSource, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	a := &archiveSource{f: f, files: map[string]*io.SectionReader{}}
	if err := checkNotGzip(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := a.index(f); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func checkNotGzip(f io.ReaderAt) error {
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err == nil && magic == [2]byte{0x1f, 0x8b} {
		return errors.New("archive is gzip-compressed; decompress it first")
	}
	return nil
}

// index reads the tar headers from r, noting where each regular file's
// content is. r is a.f itself, whose content index seeks over, or a reader
// of a.f from its start (ReadArchive), when index keeps the content of the
// files pinnable says in a.pinned.
func (a *archiveSource) index(r io.Reader) error {
	var read atomic.Int64
	tr := tar.NewReader(&countingReader{r: r, n: &read})
	offset := func() (int64, error) { return read.Load(), nil }
	if f, ok := r.(*os.File); ok {
		tr = tar.NewReader(f) // *os.File seeks, so Next skips content without reading it
		offset = func() (int64, error) { return f.Seek(0, io.SeekCurrent) }
	}
	var pinnedSize int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg || isSparseHeader(hdr) {
			continue
		}
		// archive/tar reads headers unbuffered: the offset is the content's.
		off, err := offset()
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		a.files[name] = io.NewSectionReader(a.f, off, hdr.Size)
		if a.pinned != nil && pinnable(name, hdr.Size) {
			if pinnedSize += hdr.Size; pinnedSize > maxPinned {
				return fmt.Errorf("archive holds more than %d bytes of metadata files", maxPinned)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("reading archive: %s: %w", name, err)
			}
			a.pinned[name] = data
		}
	}
}

func isSparseHeader(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// section returns where the file name's content is in the archive, or nil.
func (a *archiveSource) section(name string) *io.SectionReader {
	return a.files[strings.TrimPrefix(path.Clean("/"+name), "/")]
}

func (a *archiveSource) Open(name string) (io.ReadCloser, error) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if data, ok := a.pinned[name]; ok {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	sr, ok := a.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	r := io.NewSectionReader(sr, 0, sr.Size())
	if a.pinned == nil {
		return io.NopCloser(r), nil
	}
	d, ok := blobDigest(name)
	if !ok {
		return nil, fmt.Errorf("%s: not read when the archive was verified", name)
	}
	return io.NopCloser(&digestReader{r: r, want: d, h: d.Algorithm().Digester()}), nil
}

func (a *archiveSource) Close() error { return a.f.Close() }
