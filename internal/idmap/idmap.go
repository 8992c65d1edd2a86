// Package idmap shows directories with their owners shifted into a user
// namespace's id range, without changing a file on disk: an idmapped mount
// (mount_setattr(2) with MOUNT_ATTR_IDMAP) of a directory, made through a user
// namespace in which ids 0 to N-1 are host ids BASE to BASE+N-1, shows a file
// owned by host uid U as owned by BASE+U (and writes BASE+U back as U). A pod
// with --private-users sees its image layers through such mounts, so that
// root-owned files are owned by the pod's own root.
//
// Only some filesystems can be idmapped (ext4, xfs, btrfs, tmpfs and a few
// more, depending on the kernel; not overlayfs, nfs or fuse): Check tells, and
// the error wraps ErrUnsupported naming the filesystem.
//
// A user namespace needs a process to be made: UserNS re-executes the running
// binary in a new one, keeps a descriptor of the namespace and lets the
// process go. Every binary that calls UserNS calls Hold first thing in main.
package idmap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// envHold marks the helper process UserNS starts.
const envHold = "SKIFF_IDMAP_HOLD"

// Hold is the helper's side of UserNS: in the process UserNS starts, it waits
// until its stdin closes and exits; anywhere else it returns at once.
func Hold() {
	if os.Getenv(envHold) != "1" {
		return
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// UserNS returns a new user namespace in which ids 0 to size-1 are host ids
// base to base+size-1, uids and gids alike. It lives as long as the file is
// open.
func UserNS(base, size uint32) (*os.File, error) {
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: int(size)}}
	ns, err := UserNSMappings(m, m)
	if err != nil {
		return nil, fmt.Errorf("make a user namespace for ids %d-%d: %w", base, base+size-1, err)
	}
	return ns, nil
}

// UserNSMappings returns a new user namespace with these uid and gid
// mappings (several ranges each, as in /proc/PID/uid_map). It lives as long
// as the file is open.
func UserNSMappings(uids, gids []syscall.SysProcIDMap) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{envHold + "=1"}
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uids, GidMappings: gids,
		Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, err
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	w.Close()
	_ = cmd.Wait()
	if err != nil {
		return nil, err
	}
	return ns, nil
}

// ErrUnsupported is wrapped by the errors of Check and Mount for a directory
// whose filesystem cannot be idmapped.
var ErrUnsupported = errors.New("which cannot be idmapped")

// Check tells whether dir can be idmapped through userns (nothing is mounted).
func Check(dir string, userns *os.File) error {
	fd, err := clone(dir, userns)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// Mount mounts an idmapped copy of the mount at src (only that one, not the
// mounts below it) at target, through userns.
func Mount(src, target string, userns *os.File) error {
	fd, err := clone(src, userns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount idmapped %s at %s: %w", src, target, err)
	}
	return nil
}

// clone returns a detached, idmapped copy of the mount at dir.
func clone(dir string, userns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("idmap %s: %w", dir, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) {
			return -1, fmt.Errorf("%s is on %s, %w", dir, fsType(dir), ErrUnsupported)
		}
		return -1, fmt.Errorf("idmap %s: %w", dir, err)
	}
	return fd, nil
}

// fsType names the filesystem dir is on, from the mount table.
func fsType(dir string) string {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		real = dir
	}
	ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(real))
	if err != nil || len(ms) == 0 {
		return "a filesystem"
	}
	best := ms[0]
	for _, m := range ms[1:] {
		if len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	return strings.TrimSpace(best.FSType)
}
