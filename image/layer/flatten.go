package layer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Flatten copies layer directories as Extract leaves them (overlayfs
// whiteouts), lowest first, into dst, applying whiteouts and opaque
// directories, so that dst holds what an overlay mount of them shows.
// Ownership, modes, xattrs (but overlayfs's), times and hard links within a
// layer are kept. dst must exist. The walk visits a directory before its
// content and makes each directory it passes a real directory in dst first,
// so no path in dst ever goes through a symlink.
func Flatten(dst string, layerDirs []string) error {
	for _, src := range layerDirs {
		f := &flattener{src: src, dst: dst, links: map[uint64]string{}}
		if err := filepath.WalkDir(src, f.visit); err != nil {
			return fmt.Errorf("flatten layer %s: %w", src, err)
		}
		for i := len(f.dirs) - 1; i >= 0; i-- { // children before parents
			if err := copyTimes(f.dirs[i].st, f.dirs[i].target); err != nil {
				return err
			}
		}
	}
	return nil
}

type flatDir struct {
	target string
	st     *unix.Stat_t
}

type flattener struct {
	src, dst string
	links    map[uint64]string // inode → copy, for hard links
	dirs     []flatDir
}

func (f *flattener) visit(p string, _ fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(f.src, p)
	if err != nil || rel == "." {
		return err
	}
	target := filepath.Join(f.dst, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	mode := st.Mode & unix.S_IFMT
	if mode == unix.S_IFCHR && st.Rdev == 0 { // whiteout
		return os.RemoveAll(target)
	}
	if mode == unix.S_IFDIR {
		return f.dir(p, target, &st)
	}
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	if first, ok := f.links[st.Ino]; ok && st.Nlink > 1 {
		return os.Link(first, target)
	}
	switch mode {
	case unix.S_IFREG:
		if err := copyFile(p, target); err != nil {
			return err
		}
	case unix.S_IFLNK:
		link, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	default:
		if err := unix.Mknod(target, mode|0o600, int(st.Rdev)); err != nil {
			return err
		}
	}
	if st.Nlink > 1 {
		f.links[st.Ino] = target
	}
	if err := copyMeta(p, target, &st); err != nil {
		return err
	}
	return copyTimes(&st, target)
}

func (f *flattener) dir(p, target string, st *unix.Stat_t) error {
	fi, err := os.Lstat(target)
	opaque := false
	if v := make([]byte, 1); err == nil {
		n, _ := unix.Lgetxattr(p, opaqueXattr, v)
		opaque = n == 1 && v[0] == 'y'
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case !fi.IsDir() || opaque:
		if err := os.RemoveAll(target); err != nil {
			return err
		}
	}
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	f.dirs = append(f.dirs, flatDir{target, st})
	return copyMeta(p, target, st)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range where it can
		out.Close()
		return err
	}
	return out.Close()
}

// copyMeta copies ownership, mode and xattrs (not overlayfs's own).
func copyMeta(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("lchown %s: %w", dst, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(src, buf)
	if err != nil {
		return nil // no xattrs here (or none supported): nothing to copy
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		vbuf := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(src, name, vbuf)
		if err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, vbuf[:vn], 0); err != nil && !strings.HasPrefix(name, "security.") {
			return fmt.Errorf("xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}

func copyTimes(st *unix.Stat_t, dst string) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes %s: %w", dst, err)
	}
	return nil
}
