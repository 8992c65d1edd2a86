package fetch

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-project/skiff/image/reference"
	"github.com/skiff-project/skiff/image/store"
)

// maxPinned bounds the metadata files an archive read for verification
// keeps in memory.
const maxPinned = 64 << 20

// Archive is an oci-archive: or docker-archive: file read once, start to
// end, through a signature check, from one open file: what Import trusts
// comes from the bytes that check read. The tar headers (where each file
// is) and every small file outside blobs/ (index.json, manifest.json, docker
// configs) are kept from that one reading; the rest, read again from the
// same open file, is content-addressed and checked against digests that
// come from the kept files (OCI blobs by their digest, docker layers by the
// config's diffIDs). Rewriting the file, or swapping it in its directory,
// after the check cannot change what is imported.
type Archive struct {
	ref reference.Reference
	src *archiveSource
}

// ReadArchive opens the archive ref names (its Path) and reads it once to
// its end, passing every byte through check (a signature check, which
// should read its reader to the end; what it leaves is read after it). The
// Archive is returned also when only check failed, so that callers can name
// the image in their message; it must not be imported then. Close it.
func ReadArchive(ref reference.Reference, check func(content io.Reader) error) (*Archive, error) {
	if ref.Transport != reference.OCIArchive && ref.Transport != reference.DockerArchive {
		return nil, fmt.Errorf("%s: not an image archive", ref)
	}
	abs, err := filepath.Abs(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	ref.Path = abs
	f, err := os.Open(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	a, checkErr, err := readArchive(f, check)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return &Archive{ref: ref, src: a}, checkErr
}

// readArchive reads f from its start once: check reads it while index
// reads the same bytes through a pipe.
func readArchive(f *os.File, check func(io.Reader) error) (a *archiveSource, checkErr, err error) {
	if err := checkNotGzip(f); err != nil {
		return nil, nil, err
	}
	a = &archiveSource{f: f, files: map[string]*io.SectionReader{}, pinned: map[string][]byte{}}
	pr, pw := io.Pipe()
	indexed := make(chan error, 1)
	go func() {
		err := a.index(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // the tar's end blocks and any trailing bytes
		}
		pr.CloseWithError(err)
		indexed <- err
	}()
	content := io.TeeReader(io.NewSectionReader(f, 0, math.MaxInt64), &untilFailed{w: pw})
	checkErr = check(content)
	_, err = io.Copy(io.Discard, content)
	pw.CloseWithError(err)
	if ierr := <-indexed; ierr != nil && err == nil {
		err = ierr
	}
	return a, checkErr, err
}

// Names returns the names the archive's own content gives the image its
// reference selects: the org.opencontainers.image.ref.name of its index
// entry (oci-archive:), or its RepoTags (docker-archive:); none when the
// archive names it not at all.
func (a *Archive) Names() ([]string, error) {
	if a.ref.Transport == reference.DockerArchive {
		e, err := dockerEntry(a.src, a.ref)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.ref, err)
		}
		return e.RepoTags, nil
	}
	names, err := layoutNames(a.src, a.ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.ref, err)
	}
	return names, nil
}

// Import brings the image into s from the bytes ReadArchive read, under
// the reference's name and the archive's own names (as contentNames keeps
// them), recording v as how it was verified.
func (a *Archive) Import(ctx context.Context, s *store.Store, v store.Verification) (*store.Image, error) {
	release, err := s.Hold()
	if err != nil {
		return nil, err
	}
	defer release()
	var img *store.Image
	if a.ref.Transport == reference.DockerArchive {
		img, err = importDockerFrom(ctx, s, a.src, a.ref, v)
	} else {
		img, err = importLayout(ctx, s, a.src, a.ref, v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.ref, err)
	}
	return img, nil
}

// Close closes the archive's file.
func (a *Archive) Close() error { return a.src.Close() }

// pinnable says whether a file of an archive being verified is kept in
// memory: every small file outside blobs/ but docker's legacy layer.tar
// files, whose content the config's diffIDs pin.
func pinnable(name string, size int64) bool {
	return size <= maxJSON && !strings.HasPrefix(name, "blobs/") && pathBase(name) != "layer.tar"
}

func pathBase(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// blobDigest returns the digest a content-addressed file name
// (blobs/ALG/ENCODED) says its content has.
func blobDigest(name string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return "", false
	}
	alg, enc, ok := strings.Cut(rest, "/")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	return d, ok && d.Validate() == nil
}

// digestReader fails at the end of its content unless it has digest want.
type digestReader struct {
	r    io.Reader
	want digest.Digest
	h    digest.Digester
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Hash().Write(p[:n])
	if err == io.EOF && d.h.Digest() != d.want {
		return n, fmt.Errorf("%s: content does not match its digest", d.want)
	}
	return n, err
}

// PeekArchiveNames returns the names an archive's content gives the image
// ref selects, reading only its headers and index, for messages about an
// archive that is not verified (they are not to be trusted).
func PeekArchiveNames(ref reference.Reference) ([]string, error) {
	src, err := openArchiveSource(ref.Path)
	if err != nil {
		return nil, err
	}
	a := &Archive{ref: ref, src: src}
	defer a.Close()
	return a.Names()
}
