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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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

// killCgroup sends sig to every process in the cgroup2 group of pid (the
// container's, which holds every process of an app-as-init container) and
// in the groups below it. The group is the kernel's answer in
// /proc/PID/cgroup (the app cannot move out of its cgroup namespace); the
// root is never taken for the container's.
func killCgroup(pid int, sig unix.Signal) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return fmt.Errorf("the init's cgroup: %w", ErrNotRunning)
	}
	defer f.Close()
	cg := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			cg = filepath.Clean(p)
		}
	}
	if !filepath.IsAbs(cg) || cg == "/" {
		return unix.Kill(pid, sig) // no cgroup2 group of its own: the init alone
	}
	base := "/sys/fs/cgroup"
	if _, err := os.Stat(base + "/unified/cgroup.controllers"); err == nil {
		base += "/unified" // cgroup v1 hybrid
	}
	return filepath.WalkDir(base+cg, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, l := range strings.Fields(string(b)) {
			if q, err := strconv.Atoi(l); err == nil && q > 1 {
				_ = unix.Kill(q, sig)
			}
		}
		return nil
	})
}
