package ocipod

// App-as-init (stage1/README.md "OCI mode"): a bundle without a pid
// namespace (the host's: Kubernetes' hostPID, podman's --pid=host) has no
// systemd; its app is the container's init, in the host's pid namespace, as
// under runc. A signal goes to the app as given (nothing maps SIGTERM);
// SIGKILL and --all go to every process in the container's cgroup (the
// app's children do not die with it in the host's pid namespace), as runc
// does for such a container; delete's stage1 gc kills what is left there.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// killCgroup sends sig to every process in the cgroup of pid (the
// container's, which holds every process of an app-as-init container) and
// in the groups below it: its cgroup2 group, or on a cgroup v1 host that of
// the pids, freezer or memory hierarchy. The group is the kernel's answer in
// /proc/PID/cgroup; the root is never taken for the container's. The tree is
// read as the container's (cgtree: bounded, no symlink followed); when
// only part of it could be read, what was found is signalled and the error
// says so.
func killCgroup(pid int, sig unix.Signal) error {
	dir, err := initCgroupDir(pid)
	if err != nil {
		return err
	}
	if dir == "" {
		return unix.Kill(pid, sig) // no group of its own: the init alone
	}
	pids, err := cgtree.Pids(dir)
	for _, q := range pids {
		if q > 1 {
			_ = unix.Kill(q, sig)
		}
	}
	if err != nil {
		return fmt.Errorf("the container's cgroup %s: %w", dir, err)
	}
	return nil
}

// initCgroupDir is the directory of pid's cgroup (see killCgroup), "" when
// it has none but the root.
func initCgroupDir(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", fmt.Errorf("the init's cgroup: %w", ErrNotRunning)
	}
	defer f.Close()
	groups := map[string]string{} // hierarchy ("" for cgroup2) -> path
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		_, rest, _ := strings.Cut(sc.Text(), ":")
		ctl, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for _, c := range strings.Split(ctl, ",") {
			groups[c] = filepath.Clean(path)
		}
	}
	for _, h := range []struct{ ctl, base string }{
		{"", "/sys/fs/cgroup/unified"}, {"", "/sys/fs/cgroup"},
		{"pids", "/sys/fs/cgroup/pids"}, {"freezer", "/sys/fs/cgroup/freezer"}, {"memory", "/sys/fs/cgroup/memory"},
	} {
		cg, ok := groups[h.ctl]
		if !ok || !filepath.IsAbs(cg) || cg == "/" {
			continue
		}
		marker := "/cgroup.procs"
		if h.ctl == "" {
			marker = "/cgroup.controllers" // a cgroup2 mount
		}
		if _, err := os.Stat(h.base + marker); err == nil {
			return h.base + cg, nil
		}
	}
	return "", nil
}
