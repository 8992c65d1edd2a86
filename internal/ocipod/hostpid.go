package ocipod

// App-as-init (stage1/README.md "OCI mode"): a bundle without a pid
// namespace (the host's: Kubernetes' hostPID, podman's --pid=host) has no
// systemd; its app is the container's init, in the host's pid namespace, as
// under runc. A signal goes to the app as given (nothing maps SIGTERM);
// SIGKILL and --all go to every process in the container's cgroup (the
// app's children do not die with it in the host's pid namespace), as runc
// does for such a container, --all also once the app has exited; delete's
// stage1 gc kills what is left there.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/cgtree"
	"github.com/skiff-project/skiff/stage1/abi"
)

// appInit says whether the app is the container's init: the bundle asks
// for the host's pid namespace and the stage1 marked it so
// (abi.OCIAppInitFile).
func (p *Pod) appInit() bool {
	_, err := os.Lstat(filepath.Join(p.Dir, abi.OCIAppInitFile))
	return err == nil
}

// waitAppInit waits (at most 30 s) until the init, released by start, has
// become the app: until then it is libcontainer's init or the stage1's
// pod-init (command "stage1"), whose handlers are not the app's; then gives
// the app the time to set itself up (waitSettled).
func waitAppInit(pid int) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			return
		}
		if c := strings.TrimSpace(string(comm)); c != "stage1" && !strings.HasPrefix(c, "runc:") {
			waitSettled(pid)
			return
		}
	}
}

// killCgroup sends sig to every process in the container's cgroup and in
// the groups below it, in each hierarchy that has it: cgroup2 (the unified
// one of a cgroup v1 host) and the pids, freezer and memory hierarchies.
// The group is the stage1's record (abi.OCICgroupFile), never a process's
// own /proc/PID/cgroup: the app, root in the container, could move itself
// to a group of its own and so narrow what kill --all reaches. The tree is
// read as the container's (cgtree: bounded, no symlink followed); when only
// part of it could be read, what was found is signalled and the error says
// so. pid, the init (0 once it has exited), is signalled alone when no
// hierarchy has the group.
func (p *Pod) killCgroup(pid int, sig unix.Signal) error {
	cg, err := p.cgroup()
	if err != nil {
		return err
	}
	dirs := cgroupDirs(cg)
	if len(dirs) == 0 && pid > 0 {
		return unix.Kill(pid, sig)
	}
	seen := map[int]bool{}
	var errs []error
	for _, dir := range dirs {
		pids, err := cgtree.Pids(dir)
		for _, q := range pids {
			if q > 1 && !seen[q] {
				seen[q] = true
				_ = unix.Kill(q, sig)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("the container's cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// cgroup is the container's cgroup as the stage1 recorded it
// (abi.OCICgroupFile, out of the app's reach), read with no link followed
// and bounded: an absolute, clean path other than the root.
func (p *Pod) cgroup() (string, error) {
	d, err := os.Open(p.Dir)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", p.ID, ErrNotExist)
	}
	defer d.Close()
	b, err := abi.ReadFileAt(d, abi.OCICgroupFile, 4096)
	if err != nil {
		return "", fmt.Errorf("container %s: the stage1's record of its cgroup (%s): %w; delete --force the container", p.ID, abi.OCICgroupFile, err)
	}
	cg := strings.TrimSpace(string(b))
	if !path.IsAbs(cg) || path.Clean(cg) != cg || cg == "/" || strings.ContainsAny(cg, "\x00\n") {
		return "", fmt.Errorf("container %s: %s holds %q, not a cgroup path; delete --force the container", p.ID, abi.OCICgroupFile, cg)
	}
	return cg, nil
}

// cgroupDirs are the directories of the cgroup cg (an absolute clean path)
// in the hierarchies killCgroup reads, those that have it: cgroup2 and the
// v1 pids, freezer and memory hierarchies.
func cgroupDirs(cg string) []string {
	var dirs []string
	for _, c := range []string{"", "pids", "freezer", "memory"} {
		if d, ok := cgtree.Dir("/sys/fs/cgroup", cg, c); ok && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}
