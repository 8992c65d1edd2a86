package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/mnt"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/podnet"
)

// The stage1 rootfs's writable layer lives in memory: s1Scratch is a tmpfs
// holding the overlay's upper and work directories. What stage1 writes there
// (the pod's units) and what the sandbox and the pod's systemd write in their
// root (mount points, ...) never reaches the disk, and goes with the pod: the
// host's mount of the tmpfs is detached once the overlay is mounted (the
// overlay keeps the tmpfs), so the last reference is the pod's own mount
// namespace. Nothing of it is left for gc to remove, and a run writes no
// file of it through the disk's journal.
const (
	s1Scratch = abi.Stage1Dir + "/scratch"
	s1Upper   = s1Scratch + "/upper"
	s1Work    = s1Scratch + "/work"
)

// scratchOptions bound the tmpfs: the pod's units are a few kilobytes, and
// nothing else of the pod writes to its stage1 rootfs but the mount points
// libcontainer makes (an app's data is in its own overlay, on disk).
const scratchOptions = "mode=0755,size=64m,nr_inodes=65536"

// mountScratch mounts the tmpfs at s1Scratch (a directory prepareDirs made)
// and makes the upper and work directories in it.
func mountScratch() error {
	if err := unix.Mount("tmpfs", s1Scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, scratchOptions); err != nil {
		return fmt.Errorf("mount the stage1 rootfs's writable layer (tmpfs) at %s: %w", s1Scratch, err)
	}
	for _, d := range []string{s1Upper, s1Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			dropScratch()
			return err
		}
	}
	return nil
}

// dropScratch detaches the host's mount of the tmpfs; a mounted overlay keeps
// its own reference to it. Nothing mounted there is not an error: it may run
// after a failed mountScratch.
func dropScratch() {
	if err := mnt.Detach(s1Scratch); err != nil {
		fmt.Fprintf(os.Stderr, "stage1: %v\n", err)
	}
}

// removeEmptyStage1Dirs removes, once the pod has ended and been cleaned up,
// the directories of stage1 that are empty then and that nothing reads any
// more: the mount points of the writable layer and of the stage1 rootfs,
// libcontainer's state root and the stdio socket's directory. Each is an
// entry less for gc to remove. One that is not empty stays (rmdir refuses).
func removeEmptyStage1Dirs() {
	for _, d := range []string{s1Scratch, s1Rootfs, s1State, s1Run} {
		_ = unix.Rmdir(d)
	}
}

// dropUndoRecords removes, once the pod is marked clean and its exit
// recorded, what stage1 kept only to undo or stop the pod: the network's
// state (its teardown is done; with it the hosts file the apps were given),
// the pod's cgroup path (gc's sweep reads it only for a pod that is not
// clean), the stop timeout and stop's markers; then the stage1 directory,
// empty by then. Five to seven entries fewer for gc to remove per pod (issue
// #18: gc over 1,000 exited pods); a crash halfway, or a stop's marker
// written after, leaves the rest to gc, which removes a clean pod's
// directory whole.
func dropUndoRecords() {
	_ = os.RemoveAll(podnet.StateDir)
	_ = os.Remove(s1Cgroup)
	_ = os.Remove(s1StopTimeout)
	_ = os.Remove(s1Stop)
	_ = os.Remove(s1Kill)
	removeEmptyStage1Dirs()
	_ = unix.Rmdir(abi.Stage1Dir)
}
