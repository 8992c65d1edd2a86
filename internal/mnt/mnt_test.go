package mnt

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A tmpfs is detached and its mount point removed; nothing mounted and a
// missing path are fine; a symlink is not followed to a mount.
func TestDetachAndRemove(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "m")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, ""); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := Detach(link); err != nil {
		t.Errorf("Detach of a symlink: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("Detach followed the symlink to the tmpfs (statfs type %#x, %v)", st.Type, err)
	}
	if err := DetachAndRemove(target); err != nil {
		t.Fatalf("DetachAndRemove: %v", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("mount point still there: %v", err)
	}
	if err := DetachAndRemove(target); err != nil {
		t.Errorf("DetachAndRemove of a missing path: %v", err)
	}
	if err := Detach(dir); err != nil {
		t.Errorf("Detach with nothing mounted: %v", err)
	}
}
