package layer

import (
	"bytes"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/directio"
)

// fsys is every filesystem operation extraction does. The paths it is given
// are host paths built by the extractor (the root joined with names resolved
// inside it); the operations have the kernel's meaning, in particular which
// ones follow a symlink in the last component. Extract uses the host's
// (osFS); the fuzz test uses an in-memory one that resolves paths the way
// the kernel does, so that the extractor's own checks (cleanName,
// SecureJoin, the hard link and whiteout rules) are what it exercises.
type fsys interface {
	Lstat(name string) (os.FileInfo, error) // for securejoin.VFS too
	Readlink(name string) (string, error)
	// MkdirAll is os.MkdirAll with mode 0755.
	MkdirAll(name string) error
	Mkdir(name string, perm uint32) error
	// RemoveAll is os.RemoveAll: a symlink in the last component is removed, not followed.
	RemoveAll(name string) error
	// WriteFile creates name (O_EXCL|O_NOFOLLOW, mode 0600) with r's content.
	WriteFile(name string, r io.Reader) error
	Symlink(target, name string) error
	// Link is link(2): a symlink as oldname is linked, not followed.
	Link(oldname, newname string) error
	Mknod(name string, mode uint32, dev int) error
	Lsetxattr(name, attr string, value []byte) error
	Lchown(name string, uid, gid int) error
	// Chmod follows a symlink in the last component (the extractor never
	// calls it on one).
	Chmod(name string, mode uint32) error
	// Utimes does not follow a symlink in the last component.
	Utimes(name string, ts []unix.Timespec) error
}

// osFS is the host's filesystem.
type osFS struct{}

func (osFS) Lstat(name string) (os.FileInfo, error) { return os.Lstat(name) }
func (osFS) Readlink(name string) (string, error)   { return os.Readlink(name) }
func (osFS) MkdirAll(name string) error             { return os.MkdirAll(name, 0o755) }
func (osFS) Mkdir(name string, perm uint32) error   { return os.Mkdir(name, os.FileMode(perm)) }
func (osFS) RemoveAll(name string) error            { return os.RemoveAll(name) }
func (osFS) Symlink(target, name string) error      { return os.Symlink(target, name) }
func (osFS) Link(oldname, newname string) error     { return os.Link(oldname, newname) }
func (osFS) Mknod(name string, mode uint32, dev int) error {
	return unix.Mknod(name, mode, dev)
}
func (osFS) Lsetxattr(name, attr string, value []byte) error {
	return unix.Lsetxattr(name, attr, value, 0)
}
func (osFS) Lchown(name string, uid, gid int) error { return unix.Lchown(name, uid, gid) }
func (osFS) Chmod(name string, mode uint32) error   { return unix.Chmod(name, mode) }
func (osFS) Utimes(name string, ts []unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (osFS) WriteFile(name string, r io.Reader) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := writeContent(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// elfMagic starts every program and shared library.
var elfMagic = []byte("\x7fELF")

// elfWrite is the most writeContent writes of an ELF file at once: the page
// cache makes folios no larger than the writes that fill them.
const elfWrite = 32 << 10

var elfBufs = sync.Pool{New: func() any { b := make([]byte, elfWrite); return &b }}

// writeContent writes a file's content from r. A file of a MiB or more is
// written around the page cache, as its layer's blob is (the layer is synced
// before its rename anyway, and most of a big image's bytes are not read
// soon), but for programs and shared libraries (ELF), which pods map as they
// start: they are written through the page cache, elfWrite bytes at a time.
// That also keeps their folios small: this kernel maps a file's whole folio at
// a fault, and a process uses few of the pages of its binary and libraries
// (written a MiB at a time, the stage1's binary took 4 MiB more of every pod's
// supervisor; bench/README.md, fetch-big).
func writeContent(f *os.File, r io.Reader) error {
	// r's own errors (a tar's io.ErrUnexpectedEOF for a file cut short) come
	// again from the reads after the head's: they are its reader's, sticky.
	var head [4]byte
	n, _ := io.ReadFull(r, head[:])
	r = io.MultiReader(bytes.NewReader(head[:n]), r)
	if bytes.Equal(head[:n], elfMagic) {
		bp := elfBufs.Get().(*[]byte)
		defer elfBufs.Put(bp)
		_, err := io.CopyBuffer(struct{ io.Writer }{f}, r, *bp)
		return err
	}
	w := directio.NewWriter(f)
	if _, err := w.ReadFrom(r); err != nil {
		w.Release()
		return err
	}
	return w.Finish()
}
