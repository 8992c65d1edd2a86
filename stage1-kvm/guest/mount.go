package guest

import (
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
// paths the init sees. A bind mount's target is made as a file or a directory, as its
// source is; read-only and the other flags of a bind mount are applied by a
// remount (recursively for rbind), as mount(2) ignores them on the bind.
func mount(root string, m specs.Mount) error {
	dst := filepath.Join(root, m.Destination)
	flags, data := parseOptions(m.Options)
	if flags&unix.MS_BIND == 0 {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.Source, dst, m.Type, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
		return nil
	}
	st, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("bind mount source for %s: %w", m.Destination, err)
	}
	if err := makeTarget(dst, st.IsDir()); err != nil {
		return fmt.Errorf("bind mount target %s: %w", m.Destination, err)
	}
	if err := unix.Mount(m.Source, dst, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
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
	at := 0
	if slices.Contains(m.Options, "rro") {
		at = unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, dst, uint(at), &attr); err != nil {
		return fmt.Errorf("set the flags of %s: %w", m.Destination, err)
	}
	return nil
}

// makeTarget makes the mount point p, a directory or an empty file.
func makeTarget(p string, dir bool) error {
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
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
