package layer

import (
	"io"
	"os"

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
	// A file of a MiB or more is written around the page cache, as its
	// layer's blob is: the layer is synced before its rename anyway.
	w := directio.NewWriter(f)
	if _, err := w.ReadFrom(r); err != nil {
		w.Release()
		f.Close()
		return err
	}
	if err := w.Finish(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
