package ocipod

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/image/store"
	"github.com/skiff-project/skiff/internal/lockfile"
	"github.com/skiff-project/skiff/stage1/abi"
)

// What delete cleans besides the container itself: stage1 images in
// ROOT/.stage1 that nothing uses any more, and the default cgroup parent.

// stage1CacheLock, under ROOT, keeps the stage1 cache's cleanup away from
// creates: a create holds it shared from the stage1's import until its
// pod.json names the image; the cleanup takes it exclusively, and skips its
// work when a create holds it (the next delete does it).
const stage1CacheLock = ".stage1.lock"

// holdStage1Cache takes stage1CacheLock shared; release drops it.
func holdStage1Cache(root string) (release func(), err error) {
	return flockFile(filepath.Join(root, stage1CacheLock), unix.LOCK_SH)
}

// cleanStage1Cache removes the stage1 images that no name points to any
// more (the stage1 file they were imported from has changed since) and that
// no container under root uses, then their blobs and layers. The cache so
// holds one image per stage1 file plus those containers still run on.
func cleanStage1Cache(root string) {
	release, err := flockFile(filepath.Join(root, stage1CacheLock), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return
	}
	defer release()
	if _, err := os.Stat(filepath.Join(root, stage1Cache)); err != nil {
		return
	}
	st, err := store.Open(filepath.Join(root, stage1Cache))
	if err != nil {
		return
	}
	used, keep := map[string]bool{}, map[string]bool{}
	ids, err := list(root)
	if err != nil {
		return
	}
	for _, id := range ids {
		var m abi.PodManifest
		if err := abi.ReadJSON(filepath.Join(root, id, abi.PodManifestFile), &m); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // being deleted, or a create that crashed before it
			}
			return // unreadable: keep everything
		}
		used[m.Stage1.ImageID] = true
		for _, l := range m.Stage1.Rootfs.Layers {
			keep[l] = true
		}
	}
	imgs, err := st.List()
	if err != nil {
		return
	}
	removed := false
	for _, img := range imgs {
		if len(img.Names) == 0 && !used[img.ID.String()] {
			if st.RemoveImage(img.ID) == nil {
				removed = true
			}
		}
	}
	if removed {
		_, _ = st.Prune(keep, time.Hour)
	}
}

// flockFile opens (creating) p and locks it; closing releases the lock.
func flockFile(p string, how int) (func(), error) {
	f, err := lockfile.Open(p)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// defaultCgroupParent is where the default stage1 puts a container without
// linux.cgroupsPath (cgroupfs): /skiff-oci/ID in every hierarchy. The
// parent is skiff-oci's own; the last delete removes it (runc leaves the
// parents of its cgroups; a parent the caller named stays, as with runc).
const defaultCgroupParent = "skiff-oci"

// defaultCgroupFile, in the pod directory, says that create put the
// container under defaultCgroupParent.
const defaultCgroupFile = "default-cgroup"

// cgroupParentLock keeps the removal of the default parent away from
// creates, which hold it shared while the stage1 makes the container's
// cgroups (across --root directories: the parent is the host's).
const cgroupParentLock = "/run/skiff-oci.cgroup-parent.lock"

// removeDefaultCgroupParent removes /skiff-oci from every cgroup hierarchy
// where it is empty; rmdir refuses one that has a cgroup in it. A create
// under way (holding cgroupParentLock) keeps it.
func removeDefaultCgroupParent() {
	release, err := flockFile(cgroupParentLock, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return
	}
	defer release()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + defaultCgroupParent)
	dirs = append(dirs, "/sys/fs/cgroup/"+defaultCgroupParent)
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			_ = unix.Rmdir(d)
		}
	}
}
