package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/container"
)

// s1Cgroup names the pod's cgroup (cgroup.go), written before libcontainer
// makes it: libcontainer saves its state only once the pod's init runs, so a
// run killed in between leaves cgroups that nothing else records.
const s1Cgroup = abi.Stage1Dir + "/pod-cgroup"

// sweepWait bounds how long gc waits for a pod's processes to go after
// SIGKILL before it gives up (and the pod stays in garbage for the next gc).
const sweepWait = 10 * time.Second

// podCgroupsToSweep are the pod's cgroup paths gc removes: the default
// /skiff/UUID and the one run recorded, when it names this pod (the file is
// ours, but a path that does not end in the pod's UUID is never swept).
func podCgroupsToSweep(uuid string) []string {
	cgs := []string{"/skiff/" + uuid}
	b, err := os.ReadFile(s1Cgroup)
	if err != nil {
		return cgs
	}
	cg := path.Clean(strings.TrimSpace(string(b)))
	base := path.Base(cg)
	// sweepCgroup globs the path under /sys/fs/cgroup/*: one with a glob
	// metacharacter could name other cgroups than the pod's, so it is not swept.
	if path.IsAbs(cg) && cg != cgs[0] && (base == uuid || base == "skiff-"+uuid) && !strings.ContainsAny(cg, `*?[\`) {
		cgs = append(cgs, cg)
	}
	return cgs
}

// sweepCgroup kills every process left in cgroup cg (in every v1 hierarchy
// and in the cgroup2 tree), waits up to wait for them to go, and removes the
// cgroup depth-first. A cgroup that is already gone is no error.
func sweepCgroup(cg string, wait time.Duration) error {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cg)
	if _, err := os.Stat("/sys/fs/cgroup" + cg + "/cgroup.procs"); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+cg)
	}
	var errs []error
	var held []string // "pids in hierarchy", the same pids in most
	heldIn := map[string][]string{}
	var inPart error                 // the first hierarchy read in part (the pod grew it)
	deadline := time.Now().Add(wait) // for all hierarchies at once: the same processes
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			continue
		}
		thaw(d)
		for killCgroup(d) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := cgroups.RemovePath(d); err != nil {
			pids, perr := container.CgroupPids(d)
			if inPart == nil {
				inPart = perr
			}
			if len(pids) > 0 {
				k := fmt.Sprint(pids)
				if heldIn[k] == nil {
					held = append(held, k)
				}
				heldIn[k] = append(heldIn[k], hierarchy(d, cg))
			} else {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	for _, k := range held {
		errs = append(errs, fmt.Errorf("cgroup %s still holds processes %s %s after SIGKILL (in %s)", cg, k, wait, strings.Join(heldIn[k], ", ")))
	}
	if inPart != nil && len(errs) > 0 {
		errs = append(errs, fmt.Errorf("cgroup %s: %w", cg, inPart))
	}
	return errors.Join(errs...)
}

// hierarchy names the cgroup hierarchy of d, the cgroup cg in it: "memory",
// or "cgroup2" for the unified tree at /sys/fs/cgroup.
func hierarchy(d, cg string) string {
	h := strings.TrimPrefix(strings.TrimSuffix(d, cg), "/sys/fs/cgroup")
	if h == "" {
		return "cgroup2"
	}
	return strings.TrimPrefix(h, "/")
}

// thaw unfreezes a frozen cgroup (a paused pod) so that SIGKILL is delivered.
func thaw(dir string) {
	if strings.HasPrefix(dir, "/sys/fs/cgroup/freezer/") {
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err == nil {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0o644)
			}
			return nil
		})
	}
}

// killCgroup SIGKILLs every process in the cgroup dir and below (through
// cgroup.kill where the kernel has it); it reports whether there were any.
func killCgroup(dir string) bool {
	pids, _ := container.CgroupPids(dir) // read in part: the next round kills more
	if len(pids) == 0 {
		return false
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644); err == nil {
		return true
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return true
}
