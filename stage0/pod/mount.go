package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// unmountBelow lazily detaches (MNT_DETACH) every mount at or below dir,
// deepest first, so that removing dir can never reach into a filesystem that
// stage1 left mounted (a bind mount of a host directory, say). It fails if
// any such mount is still there afterwards.
func unmountBelow(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if len(mounts) == 0 {
		return nil
	}
	points := make([]string, 0, len(mounts))
	for _, m := range mounts {
		points = append(points, m.Mountpoint)
	}
	// Deepest first; the same point may be stacked several times.
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		err := unix.Unmount(mp, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if len(left) > 0 {
		return fmt.Errorf("%s is still mounted; not removing the pod directory", left[0].Mountpoint)
	}
	return nil
}

// mountsBelow reads the mount table once and returns the names of the
// entries of dir (pod UUIDs in a state directory) that have a mount at or
// below them.
func mountsBelow(dir string) (map[string]bool, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", dir, err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	below := map[string]bool{}
	for _, m := range mounts {
		rel, err := filepath.Rel(real, m.Mountpoint)
		if err != nil || rel == "." {
			continue
		}
		below[strings.SplitN(rel, "/", 2)[0]] = true
	}
	return below, nil
}

// errMountBelow is returned by removeTree when it meets another mount.
var errMountBelow = errors.New("a mount is below the pod directory")

// removeTree removes dir and everything below it, like os.RemoveAll, but
// never crosses into another mount: a directory whose mount ID differs from
// dir's stops it with errMountBelow (and a mounted-on file fails to unlink
// with EBUSY), so that what a pod left mounted (a bind mount of a host
// directory) is never emptied, even when it appeared after the mount table
// was read. It opens nothing through a symbolic link and removes by the
// entry types getdents reports, so each entry costs one unlink. A dir that
// is gone already is no error. On a kernel without statx mount IDs it falls
// back to unmountBelow and os.RemoveAll.
func removeTree(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	mnt, ok, err := mountID(fd)
	if err == nil && !ok {
		unix.Close(fd)
		if err := unmountBelow(dir); err != nil {
			return err
		}
		return os.RemoveAll(dir)
	}
	if err == nil {
		// dir itself mounted on: its parent is on another mount.
		var stx unix.Statx_t
		err = unix.Statx(unix.AT_FDCWD, filepath.Dir(dir), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx)
		switch {
		case err != nil:
			err = &os.PathError{Op: "statx", Path: filepath.Dir(dir), Err: err}
		case stx.Mnt_id != mnt:
			err = fmt.Errorf("%s: %w", dir, errMountBelow)
		}
	}
	if err == nil {
		err = removeContents(fd, dir, mnt)
	} else {
		unix.Close(fd)
	}
	if err != nil {
		return err
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// mountID returns the mount ID of the open file fd; ok is false when the
// kernel does not report one.
func mountID(fd int) (id uint64, ok bool, err error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, false, &os.PathError{Op: "statx", Path: fmt.Sprintf("fd %d", fd), Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, false, nil
	}
	return stx.Mnt_id, true, nil
}

// removeContents empties the directory open as fd (named path, for errors),
// on mount mnt, and closes fd.
func removeContents(fd int, path string, mnt uint64) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() {
			err := unix.Unlinkat(fd, name, 0)
			if err == nil || errors.Is(err, unix.ENOENT) {
				continue
			}
			if errors.Is(err, unix.EBUSY) { // a file mounted on
				return fmt.Errorf("%s: %w", filepath.Join(path, name), errMountBelow)
			}
			if !errors.Is(err, unix.EISDIR) {
				return &os.PathError{Op: "unlink", Path: filepath.Join(path, name), Err: err}
			}
		}
		sub := filepath.Join(path, name)
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: sub, Err: err}
		}
		id, _, err := mountID(cfd)
		if err == nil && id != mnt {
			err = fmt.Errorf("%s: %w", sub, errMountBelow)
		}
		if err != nil {
			unix.Close(cfd)
			return err
		}
		if err := removeContents(cfd, sub, mnt); err != nil {
			return err
		}
		if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "rmdir", Path: sub, Err: err}
		}
	}
	return nil
}
