package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

const paxXattrPrefix = "SCHILY.xattr."

// metadata applies ownership, mode, xattrs and times. Ownership comes first
// because chown clears setuid and setgid bits. Directory times are set last,
// in finishDirs, since creating their content changes them.
func (x *extractor) metadata(target string, hdr *tar.Header) error {
	if err := x.fs.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := x.fs.Chmod(target, uint32(hdr.Mode&0o7777)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := x.setXattrs(target, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirs = append(x.dirs, hdr)
		return nil
	}
	return x.setTimes(target, hdr)
}

func (x *extractor) setXattrs(target string, hdr *tar.Header) error {
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "trusted.overlay.") {
			// Only whiteout conversion may speak to overlayfs; a layer
			// must not forge opaque dirs, redirects or metacopy.
			continue
		}
		err := x.fs.Lsetxattr(target, name, []byte(value))
		if err == nil {
			continue
		}
		if strings.HasPrefix(name, "security.") || errors.Is(err, unix.ENOTSUP) && strings.HasPrefix(name, "user.") {
			continue // SELinux labels, capabilities on odd filesystems: best effort
		}
		return fmt.Errorf("xattr %s: %w", name, err)
	}
	return nil
}

func (x *extractor) setTimes(target string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
	if err := x.fs.Utimes(target, ts); err != nil {
		return fmt.Errorf("utimes: %w", err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// finishDirs sets directory times. Names are resolved again: a later entry
// may have replaced a parent with a symlink, and the kernel would follow it.
func (x *extractor) finishDirs() error {
	for _, hdr := range x.dirs {
		rel, _ := cleanName(hdr.Name) // checked when the entry was created
		dir, err := securejoin.SecureJoinVFS(x.root, rel, x.fs)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if fi, err := x.fs.Lstat(dir); err != nil || !fi.IsDir() {
			continue // removed or replaced by a later entry
		}
		if err := x.setTimes(dir, hdr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	return nil
}
