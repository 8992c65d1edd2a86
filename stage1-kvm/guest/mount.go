package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountFlags are the mount(2) flags an OCI mount option may name; the other
// options are file system data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"strictatime": {false, unix.MS_STRICTATIME}, "relatime": {false, unix.MS_RELATIME},
	"noatime": {false, unix.MS_NOATIME},
	"bind":    {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"rro": {false, unix.MS_RDONLY}, // and recursively: see mount
}

func parseOptions(opts []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range opts {
		f, ok := mountFlags[o]
		switch {
		case !ok:
			rest = append(rest, o)
		case f.clear:
			flags &^= f.flag
		default:
			flags |= f.flag
		}
	}
	return flags, strings.Join(rest, ",")
}

// mount makes one OCI mount, its destination under root; bind sources are
// paths the init sees. The destination (which podfs resolved inside the
// app's rootfs) is made and opened one component at a time without following
// any symlink (a symlink on the way is an error, never followed out of the
// app's rootfs), and the mount goes onto that descriptor through
// /proc/self/fd. A bind mount's target is made as a file or a directory, as
// its source is; read-only and the other flags of a bind mount are applied by
// a remount (recursively for rbind), as mount(2) ignores them on the bind.
func mount(root string, m specs.Mount) error {
	flags, data := parseOptions(m.Options)
	if flags&unix.MS_BIND == 0 {
		fd, err := openTarget(root, m.Destination, true)
		if err != nil {
			return fmt.Errorf("mount target %s: %w", m.Destination, err)
		}
		defer unix.Close(fd)
		if err := unix.Mount(m.Source, fdPath(fd), m.Type, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
		return nil
	}
	st, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("bind mount source for %s: %w", m.Destination, err)
	}
	fd, err := openTarget(root, m.Destination, st.IsDir())
	if err != nil {
		return fmt.Errorf("bind mount target %s: %w", m.Destination, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount(m.Source, fdPath(fd), "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", m.Source, m.Destination, err)
	}
	var attr unix.MountAttr
	for f, a := range map[uintptr]uint64{unix.MS_RDONLY: unix.MOUNT_ATTR_RDONLY, unix.MS_NOSUID: unix.MOUNT_ATTR_NOSUID,
		unix.MS_NODEV: unix.MOUNT_ATTR_NODEV, unix.MS_NOEXEC: unix.MOUNT_ATTR_NOEXEC} {
		if flags&f != 0 {
			attr.Attr_set |= a
		}
	}
	if attr.Attr_set == 0 {
		return nil
	}
	// the new mount, reopened the same way: what was mounted is where it
	// should be
	mfd, err := openTarget(root, m.Destination, st.IsDir())
	if err != nil {
		return fmt.Errorf("bind mount target %s: %w", m.Destination, err)
	}
	defer unix.Close(mfd)
	at := unix.AT_EMPTY_PATH
	if slices.Contains(m.Options, "rro") {
		at |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(mfd, "", uint(at), &attr); err != nil {
		return fmt.Errorf("set the flags of %s: %w", m.Destination, err)
	}
	return nil
}

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// openTarget opens the mount point p under root as an O_PATH descriptor,
// making what is missing (directories, and a last component that is an empty
// file unless dir) one component at a time, following no symlink.
func openTarget(root, p string, dir bool) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	for i, c := range parts {
		if c == "." || c == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%q in a resolved path", c)
		}
		last := i == len(parts)-1
		var next int
		if last && !dir {
			next, err = openFile(fd, c)
		} else {
			next, err = openDir(fd, c)
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// openDir opens directory name in dfd, making it if missing; a symlink is an
// error (ELOOP or ENOTDIR).
func openDir(dfd int, name string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, name, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(dfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Openat(dfd, name, flags, 0)
	}
	return fd, err
}

// openFile opens file name in dfd, making it empty if missing; a symlink is
// an error (ELOOP).
func openFile(dfd int, name string) (int, error) {
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		var f int
		f, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		if err == nil {
			unix.Close(f)
		}
		fd, err = unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(fd)
		return -1, unix.ELOOP
	}
	return fd, nil
}

// guestSource maps a bind mount's host source to where the init sees it:
// under the pod share or one of the other shares.
func (c *Config) guestSource(host string) (string, error) {
	within := func(base string) (string, bool) {
		rel, err := filepath.Rel(base, host)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", false
		}
		return rel, true
	}
	if rel, ok := within(c.PodDir); ok {
		return filepath.Join(root, PodMount, rel), nil
	}
	for _, s := range c.Shares {
		if s.File && host == s.Source {
			return filepath.Join(root, SharesMount, s.Tag, filepath.Base(s.Source)), nil
		}
		if rel, ok := within(s.Source); ok && !s.File {
			return filepath.Join(root, SharesMount, s.Tag, rel), nil
		}
	}
	return "", fmt.Errorf("%s is not shared with the VM", host)
}
