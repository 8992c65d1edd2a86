// Package layer extracts one image layer (a tar, plain, gzip or zstd)
// into an empty directory, computing its diffID while it streams, and turns
// OCI whiteouts into overlayfs whiteouts so the directory can be used as an
// overlay lowerdir as is. No entry can create or change anything outside
// that directory. Flatten merges such directories into one plain tree (for
// image extract and render).
package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Whiteout conventions: OCI (aufs-style) in the tar, overlayfs on disk.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// ErrUnsupportedCompression is wrapped by errors for layer compressions skiff
// does not decompress (today: none is detected besides gzip and zstd).
var ErrUnsupportedCompression = errors.New("unsupported layer compression")

// ErrUnsafeEntry is wrapped by errors for tar entries that would escape the
// directory or are otherwise malformed.
var ErrUnsafeEntry = errors.New("unsafe tar entry")

// ErrTooLarge is wrapped by errors for layers that pass the Limits.
var ErrTooLarge = errors.New("layer too large")

// Limits bound what one layer may expand to, whatever its compressed size:
// a few kilobytes of gzip can expand to terabytes, a few megabytes of tar
// headers to millions of inodes.
type Limits struct {
	MaxSize    int64 // bytes of uncompressed tar: headers, content, padding
	MaxEntries int64 // tar entries
}

// DefaultLimits are far above any real image's layer.
var DefaultLimits = Limits{MaxSize: 64 << 30, MaxEntries: 4 << 20}

var limits = DefaultLimits

// SetLimits changes the limits of every later extraction (and of ACI
// imports, see CheckSize). Call it before extracting, e.g. from flags.
func SetLimits(l Limits) { limits = l }

// CurrentLimits returns the limits in force.
func CurrentLimits() Limits { return limits }

// CheckSize returns an error wrapping ErrTooLarge when n bytes of
// uncompressed layer are more than the limit allows.
func (l Limits) CheckSize(n int64) error {
	if n > l.MaxSize {
		return fmt.Errorf("%w: it expands to more than %d bytes (the limit; raise it with skiff --max-layer-size)", ErrTooLarge, l.MaxSize)
	}
	return nil
}

// Extract extracts the layer read from r into dir, which must exist and be
// empty, and returns the layer's diffID: the sha256 of the uncompressed tar.
// gzip and zstd compression are detected from the stream. On error dir holds a partial
// extraction that the caller removes.
func Extract(dir string, r io.Reader) (digest.Digest, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := checkEmpty(root); err != nil {
		return "", err
	}
	return extract(osFS{}, root, r, limits)
}

// extract is Extract on fs, into root (absolute, clean, existing and empty).
func extract(fs fsys, root string, r io.Reader, lim Limits) (digest.Digest, error) {
	plain, closeFn, err := decompress(r)
	if err != nil {
		return "", err
	}
	defer closeFn()
	digester := digest.SHA256.Digester()
	stream := io.TeeReader(&boundedReader{r: plain, lim: lim}, digester.Hash())
	x := &extractor{fs: fs, root: root, maxEntries: lim.MaxEntries}
	if err := x.run(tar.NewReader(stream)); err != nil {
		return "", err
	}
	// The diffID covers the whole stream, including padding after the end marker.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return "", fmt.Errorf("reading layer: %w", err)
	}
	if err := x.finishDirs(); err != nil {
		return "", err
	}
	return digester.Digest(), nil
}

// boundedReader fails once more than lim.MaxSize bytes were read.
type boundedReader struct {
	r   io.Reader
	n   int64
	lim Limits
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if err := b.lim.CheckSize(b.n); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err := b.lim.CheckSize(b.n); err != nil {
		return n, err
	}
	return n, err
}

func checkEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("extract into %s: directory is not empty", dir)
	}
	return nil
}

// decompress detects gzip and zstd by their magic numbers.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("reading layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("layer gzip header: %w", err)
		}
		r, stop := readAhead(zr, func() { zr.Close() }) // chunks of its own: no bufio on top
		return r, stop, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, fmt.Errorf("layer zstd header: %w", err)
		}
		r, stop := readAhead(zr, zr.Close)
		return r, stop, nil
	}
	return br, func() {}, nil
}

type extractor struct {
	fs         fsys
	root       string
	dirs       []*tar.Header // directories whose times are set last, after their content
	entries    int64
	maxEntries int64
}

func (x *extractor) run(tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if x.entries++; x.entries > x.maxEntries {
			return fmt.Errorf("%w: it has more than %d entries (the limit; raise it with skiff --max-layer-entries)", ErrTooLarge, x.maxEntries)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
}

// cleanName turns a tar entry name into a slash-separated path relative to
// the root, "" for the root itself. Absolute names are taken as relative to
// the root; names that climb above it are refused.
func cleanName(name string) (string, error) {
	if len(name) > unix.PathMax {
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrUnsafeEntry, unix.PathMax)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafeEntry)
	}
	p := path.Clean("/" + name)
	if rel := path.Clean(strings.TrimLeft(name, "/")); rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: path escapes the layer", ErrUnsafeEntry)
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > 255 {
			return "", fmt.Errorf("%w: name component longer than 255 bytes", ErrUnsafeEntry)
		}
	}
	return strings.TrimPrefix(p, "/"), nil
}

// resolve returns the host path for the entry named rel: its parent resolved
// inside the root (symlinks included, never leaving it), its last component
// not followed. The parent directories are created if missing.
func (x *extractor) resolve(rel string) (string, error) {
	if rel == "" {
		return x.root, nil
	}
	dir, base := path.Split(rel)
	parent, err := x.resolveDir(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, base), nil
}

// resolveDir resolves rel inside the root, following symlinks without ever
// leaving it, and creates the directory if it is missing.
func (x *extractor) resolveDir(rel string) (string, error) {
	dir, err := securejoin.SecureJoinVFS(x.root, rel, x.fs)
	if err != nil {
		return "", err
	}
	return dir, x.fs.MkdirAll(dir)
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if len(hdr.Linkname) > unix.PathMax {
		return fmt.Errorf("%w: link target longer than %d bytes", ErrUnsafeEntry, unix.PathMax)
	}
	base := path.Base(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(rel, base)
	}
	target, err := x.resolve(rel)
	if err != nil {
		return err
	}
	if err := x.replace(target, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	if err := x.create(target, hdr, r); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		return nil // a hard link shares its target's metadata
	}
	return x.metadata(target, hdr)
}

// whiteout records a deletion the way overlayfs expects it.
func (x *extractor) whiteout(rel, base string) error {
	if base == whiteoutOpaque {
		dir, err := x.resolveDir(path.Dir(rel))
		if err != nil {
			return err
		}
		return x.fs.Lsetxattr(dir, opaqueXattr, []byte("y"))
	}
	if strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix) {
		return nil // other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafeEntry, name)
	}
	target, err := x.resolve(path.Join(path.Dir(rel), name))
	if err != nil {
		return err
	}
	if err := x.replace(target, false); err != nil {
		return err
	}
	return x.fs.Mknod(target, unix.S_IFCHR, 0)
}

// replace removes what is at target unless both it and the new entry are
// directories (a directory entry then only updates metadata).
func (x *extractor) replace(target string, isDir bool) error {
	if target == x.root {
		if !isDir {
			return fmt.Errorf("%w: non-directory at the layer root", ErrUnsafeEntry)
		}
		return nil
	}
	fi, err := x.fs.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if isDir && fi.IsDir() {
		return nil
	}
	return x.fs.RemoveAll(target)
}

func (x *extractor) create(target string, hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if isSparse(hdr) {
			// A few bytes of sparse map can describe exabytes of holes.
			return fmt.Errorf("%w: sparse files are not supported", ErrUnsafeEntry)
		}
		return x.fs.WriteFile(target, r)
	case tar.TypeDir:
		if target == x.root {
			return nil
		}
		err := x.fs.Mkdir(target, 0o700)
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	case tar.TypeSymlink:
		return x.fs.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		return x.hardlink(target, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		return x.fs.Mknod(target, mode|0o600, int(dev))
	}
	return fmt.Errorf("%w: unsupported entry type %q", ErrUnsafeEntry, hdr.Typeflag)
}

func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// hardlink links target to an earlier entry of this layer. The link name is
// resolved inside the root like any entry name, and its last component is
// not followed, so a link can never reach a file outside the root.
func (x *extractor) hardlink(target, linkname string) error {
	rel, err := cleanName(linkname)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("%w: hard link to the layer root", ErrUnsafeEntry)
	}
	dir, base := path.Split(rel)
	parent, err := securejoin.SecureJoinVFS(x.root, dir, x.fs)
	if err != nil {
		return err
	}
	old := filepath.Join(parent, base)
	if fi, err := x.fs.Lstat(old); err != nil {
		return fmt.Errorf("hard link target %q: %w", linkname, err)
	} else if fi.IsDir() {
		return fmt.Errorf("%w: hard link to directory %q", ErrUnsafeEntry, linkname)
	}
	return x.fs.Link(old, target)
}
