// Package mnt holds the mount operations shared by stage0, networking and
// the stage1s.
package mnt

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Detach lazily unmounts what is mounted at path (MNT_DETACH: the mount
// leaves the tree now and goes when its last user does). Nothing mounted
// there, or no path, is not an error: a cleanup may run after a failed or
// an earlier cleanup. It does not follow a symlink at path.
func Detach(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// DetachAndRemove detaches what is mounted at path and removes path (an
// empty directory or a file). A missing path is not an error.
func DetachAndRemove(path string) error {
	if err := Detach(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
