//go:build functional

package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// An app over its memory limit is OOM-killed, and a caller that starts
// watching for OOM events when start returns, as containerd's runc shim
// does, hears of it: the shim loads the cgroup of the pid create reported
// (at create), registers memory.oom_control's eventfd (cgroup v1) or an
// inotify watch on memory.events (cgroup v2) only after start has returned,
// and without that event the CRI reports the exit's reason as "Error", not
// "OOMKilled" (critest's "should terminate with exitCode 137 and reason
// OOMKilled", whose app this is). Fails when start returns only once the app
// has run (and so has been OOM-killed already).
func TestOCIOOMAfterStartReachesTheShimsWatch(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M")
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["resources"] = map[string]any{"memory": map[string]any{"limit": 15 << 20, "swap": 15 << 20}}
	})
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("oom%d", i)
		o.forID(b, id)
		o.ok("create", "--bundle", b, id)
		pid := o.state(id).Pid
		dir := oomCgroupDir(t, pid) // as the shim's NewContainer, after create
		o.ok("start", id)
		w := watchOOM(t, dir) // as the shim's Start, after start returned
		o.waitStatus(id, "stopped")
		got := w()
		if r := o.rt("delete", id); r.code != 0 {
			t.Fatalf("delete %s: exit %d: %s", id, r.code, r.stderr)
		}
		o.nothingLeft(id, pid)
		if !got {
			t.Fatalf("%s: the app was OOM-killed before a watch on %s, set up when start returned, could hear of it", id, dir)
		}
	}
}

// oomCgroupDir is the memory cgroup of pid, as containerd's shim finds it
// (cgroups.PidPath on v1, PidGroupPath on v2).
func oomCgroupDir(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unified := fileExists("/sys/fs/cgroup/cgroup.controllers")
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if unified && parts[0] == "0" {
			return filepath.Join("/sys/fs/cgroup", parts[2])
		}
		for _, c := range strings.Split(parts[1], ",") {
			if !unified && c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", parts[2])
			}
		}
	}
	t.Fatalf("pid %d: no memory cgroup in /proc/%d/cgroup", pid, pid)
	return ""
}

// watchOOM starts watching dir for OOM kills as containerd 1.6's shim does
// and returns a function that tells whether one came since.
func watchOOM(t *testing.T, dir string) func() bool {
	t.Helper()
	if !fileExists(filepath.Join(dir, "memory.oom_control")) {
		// cgroup v2: an inotify watch on memory.events, whose oom_kill
		// counts the subtree's kills; the shim publishes when it grew.
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		before := oomKills(t, filepath.Join(dir, "memory.events"))
		if _, err := unix.InotifyAddWatch(fd, filepath.Join(dir, "memory.events"), unix.IN_MODIFY); err != nil {
			t.Fatal(err)
		}
		return func() bool {
			buf := make([]byte, 4096)
			n, _ := unix.Read(fd, buf)
			return n > 0 && oomKills(t, filepath.Join(dir, "memory.events")) > before
		}
	}
	// cgroup v1: an eventfd on memory.oom_control (cgroup.event_control).
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	before := oomKills(t, filepath.Join(dir, "memory.oom_control"))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(fmt.Sprintf("%d %d", efd, ctl.Fd())), 0); err != nil {
		t.Fatal(err)
	}
	return func() bool {
		var b [8]byte
		n, _ := unix.Read(efd, b[:])
		// The eventfd also fires when the cgroup goes: the shim then
		// drops it; here the cgroup stays until delete.
		return n == 8 && oomKills(t, filepath.Join(dir, "memory.oom_control")) > before
	}
}

// oomKills reads the oom_kill counter of memory.oom_control (v1) or
// memory.events (v2).
func oomKills(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
