package fetch

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
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

// archiveSource is a tar of a layout. Opening it reads only the tar headers
// (seeking over the content), noting where each file's bytes are; files are
// then read in place, so a large archive is neither extracted nor read twice.
type archiveSource struct {
	f     *os.File
	files map[string]*io.SectionReader
}

func openArchiveSource(file string) (*archiveSource, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	a := &archiveSource{f: f, files: map[string]*io.SectionReader{}}
	if err := a.index(); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func (a *archiveSource) index() error {
	var magic [2]byte
	if _, err := a.f.ReadAt(magic[:], 0); err == nil && magic == [2]byte{0x1f, 0x8b} {
		return errors.New("archive is gzip-compressed; decompress it first")
	}
	tr := tar.NewReader(a.f) // *os.File seeks, so Next skips content without reading it
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
		off, err := a.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		a.files[name] = io.NewSectionReader(a.f, off, hdr.Size)
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

func (a *archiveSource) Open(name string) (io.ReadCloser, error) {
	sr, ok := a.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return io.NopCloser(io.NewSectionReader(sr, 0, sr.Size())), nil
}

func (a *archiveSource) Close() error { return a.f.Close() }
