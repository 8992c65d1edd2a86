package pod

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

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
