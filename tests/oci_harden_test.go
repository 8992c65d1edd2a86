//go:build functional

package tests

// skiff-oci (issue #14's leftovers): what a process of the container could
// do to the runtime's own processes or to kill's reach.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unifiedGroup is the cgroup2 directory (on the host) of pid, "" when none.
func unifiedGroup(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			base := "/sys/fs/cgroup"
			if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
				base = "/sys/fs/cgroup/unified"
			}
			return filepath.Join(base, p)
		}
	}
	return ""
}

// freezeGroup freezes (on) or thaws a cgroup2 group and waits until it is.
func freezeGroup(t *testing.T, dir string, on bool) {
	t.Helper()
	val := "0"
	if on {
		val = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(val), 0); err != nil {
		t.Fatalf("freeze %s: %v", dir, err)
	}
	waitFor(t, 30*time.Second, dir+" frozen "+val, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return bytes.Contains(b, []byte("frozen "+val))
	})
}

// vmReadWithoutPtraceCap tries process_vm_readv(2) on pid from a thread
// that has every capability permitted but CAP_SYS_PTRACE not effective: a
// same-uid caller as a process of the container is, which the kernel lets
// at a dumpable process only. Its error: EFAULT (the address is 0) when the
// access was allowed, EPERM when the process is not dumpable.
func vmReadWithoutPtraceCap(t *testing.T, pid int) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its capabilities
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capget: %w", err)
			return
		}
		if data[0].Permitted&(1<<unix.CAP_SYS_PTRACE) == 0 {
			done <- errors.New("the test has no CAP_SYS_PTRACE to drop")
			return
		}
		data[0].Effective &^= 1 << unix.CAP_SYS_PTRACE
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capset: %w", err)
			return
		}
		buf := make([]byte, 1)
		_, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &buf[0], Len: 1}}, []unix.RemoteIovec{{Base: 0, Len: 1}}, 0)
		done <- err
	}()
	return <-done
}

// procsWith lists the pids whose command line holds every one of parts.
func procsWith(parts ...string) []int {
	var out []int
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && bytes.Contains(b, []byte(p))
		}
		if all {
			out = append(out, pid)
		}
	}
	return out
}

// startFor creates and starts container id from a bundle of its own whose
// process is argv, with the host's pid namespace (the app as the init)
// when hostPID, and returns the host pid of the process whose command line
// is app, once it runs.
func (o *ociEnv) startFor(id string, hostPID bool, app []string, argv ...string) int {
	o.t.Helper()
	b := o.bundle("b-"+id, argv...)
	if hostPID {
		b = hostPIDBundle(o, "h-"+id, argv...)
	}
	o.forID(b, id)
	o.ok("create", "--bundle", b, id)
	o.ok("start", id)
	pid := 0
	waitFor(o.t, 60*time.Second, id+"'s app to run", func() bool {
		pid = hostPidOf(app...)
		return pid != 0
	})
	return pid
}

// killDelete kills container id, deletes it and checks that nothing of it
// is left, pids included.
func (o *ociEnv) killDelete(id string, pids ...int) {
	o.t.Helper()
	o.ok("kill", id, "KILL")
	o.waitStatus(id, "stopped")
	o.ok("delete", id)
	o.nothingLeft(id, pids...)
}

// The runtime's processes that join a running container for exec (stage1
// enter, oci-join, app-exec) are not dumpable while they are root in it,
// before the exec (CVE-2016-9962, as runc's init): a process of the
// container with the same uid and no CAP_SYS_PTRACE cannot ptrace them or
// read their memory, descriptors and root. The hook: the cgroup2 group the
// joiner goes to is frozen, so it stops there, in the container. Both the
// systemd init and app-as-init (host pid namespace, where the container sees
// the joiner and stage1 enter).
func TestOCIExecJoinerIsNotDumpable(t *testing.T) {
	o := newOCIEnv(t)
	for _, c := range []struct {
		id, sleep string
		hostPID   bool
	}{{"dj1", "4392", false}, {"dj2", "4393", true}} {
		marker := "joiner-" + c.id
		app := o.startFor(c.id, c.hostPID, []string{"sleep", c.sleep}, "/bin/sh", "-c", "sleep 4391 & exec sleep "+c.sleep)
		// The control: the app's own process (root, fewer capabilities
		// than the test) is dumpable: the access is allowed.
		if err := vmReadWithoutPtraceCap(t, app); !errors.Is(err, unix.EFAULT) {
			t.Fatalf("%s: process_vm_readv of the app's process %d without CAP_SYS_PTRACE: %v; want EFAULT (the access allowed)", c.id, app, err)
		}
		group := unifiedGroup(app)
		if group == "" {
			t.Skip("no cgroup2 group for the app: no freezer to hold the joiner with")
		}
		freezeGroup(t, group, true)
		res := make(chan result, 1)
		go func() { res <- o.rt("exec", c.id, "/bin/true", marker) }()
		var joiner int
		waitFor(t, 60*time.Second, c.id+": the exec's joiner held in the frozen group", func() bool {
			for _, pid := range procsWith("/usr/lib/skiff/app-exec", marker) {
				if unifiedGroup(pid) == group {
					joiner = pid
					return true
				}
			}
			return false
		})
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", joiner))
		if err := vmReadWithoutPtraceCap(t, joiner); !errors.Is(err, unix.EPERM) {
			t.Errorf("%s: the exec's joiner %d (%q) in the container: process_vm_readv without CAP_SYS_PTRACE: %v; want EPERM (not dumpable)",
				c.id, joiner, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})[:min(len(cmd), 60)], err)
		}
		if c.hostPID {
			// stage1 enter, oci-join's parent, is in the host's pid
			// namespace too: the container sees it.
			if enter := ppidOf(joiner); enter > 1 {
				if err := vmReadWithoutPtraceCap(t, enter); !errors.Is(err, unix.EPERM) {
					t.Errorf("%s: stage1 enter %d: process_vm_readv without CAP_SYS_PTRACE: %v; want EPERM (not dumpable)", c.id, enter, err)
				}
			}
		}
		freezeGroup(t, group, false)
		if r := <-res; r.code != 0 {
			t.Errorf("%s: exec once thawed: exit %d, stderr %q; want 0", c.id, r.code, r.stderr)
		}
		o.killDelete(c.id, app)
	}
}

// hostPIDAppAndChild creates and starts container id, whose app is its init
// in the host's pid namespace (`sleep APPARG`) with a child (`sleep
// CHILDARG`), and returns their host pids and the app's cgroup2 group,
// which must be the container's (the test is skipped otherwise).
func (o *ociEnv) hostPIDAppAndChild(id, childArg, appArg string) (child, app int, group string) {
	t := o.t
	t.Helper()
	b := hostPIDBundle(o, "b", "/bin/sh", "-c", "sleep "+childArg+" & exec sleep "+appArg)
	o.forID(b, id)
	o.ok("create", "--bundle", b, id)
	o.ok("start", id)
	waitFor(t, 60*time.Second, "the app and its child to run", func() bool {
		child, app = hostPidOf("sleep", childArg), hostPidOf("sleep", appArg)
		return child != 0 && app != 0
	})
	group = unifiedGroup(app)
	if group == "" || !strings.HasSuffix(group, "/"+o.cgroup+"/"+id) {
		t.Skipf("the app's cgroup2 group is %q, not the container's", group)
	}
	return child, app, group
}

// kill --all reaches every process of the container's cgroup, the stage1's
// record of it: an app that is the init (host pid namespace) and has moved
// itself into a group of its own below the container's does not narrow it
// to that group (skiff-oci took the group from the init's /proc/PID/cgroup).
// The test moves the app as the app, root in a container given write access
// to its cgroups, could.
func TestOCIKillAllIsTheContainersCgroupNotTheInits(t *testing.T) {
	o := newOCIEnv(t)
	child, app, group := o.hostPIDAppAndChild("ka1", "4401", "4402")
	sub := filepath.Join(group, "escaped")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(app)), 0); err != nil {
		t.Fatal(err)
	}
	o.ok("kill", "--all", "ka1", "KILL")
	o.waitStatus("ka1", "stopped")
	waitFor(t, 30*time.Second, "kill --all KILL to end the app's child, left in the container's own group", func() bool { return !alive(child) })
	o.ok("delete", "ka1")
	o.nothingLeft("ka1", app, child)
}

// pause and ps act on the container's cgroup, the stage1's record of it:
// an app that is the init (host pid namespace) and has moved itself into a
// group of its own below the container's, in every hierarchy, narrows
// neither to that group (skiff-oci took the group from the init's
// /proc/PID/cgroup: pause froze the app alone and called the container
// paused, ps listed the app alone). The test moves the app as the app, root
// in a container given write access to its cgroups, could.
func TestOCIPauseAndPsAreTheContainersCgroupNotTheInits(t *testing.T) {
	o := newOCIEnv(t)
	child, app, group := o.hostPIDAppAndChild("pe1", "4431", "4432")
	rel := group[strings.LastIndex(group, "/"+o.cgroup+"/pe1"):]
	freezer := ""
	for _, h := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/pids"} {
		if fi, err := os.Stat(h + rel); err != nil || !fi.IsDir() {
			continue
		}
		if h == "/sys/fs/cgroup/freezer" {
			freezer = h + rel
		}
		sub := filepath.Join(h+rel, "escaped")
		if err := os.Mkdir(sub, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(app)), 0); err != nil {
			t.Fatal(err)
		}
	}
	o.ok("pause", "pe1")
	if st := o.state("pe1"); st.Status != "paused" {
		t.Errorf("after pause: %s; want paused", st.Status)
	}
	// The child, left in the container's own group, is frozen with it.
	if freezer != "" {
		if s := readTrimmed(t, filepath.Join(freezer, "freezer.state")); s != "FROZEN" {
			t.Errorf("the container's freezer group %s after pause: %s; want FROZEN (the whole container)", freezer, s)
		}
	} else if ev := readTrimmed(t, filepath.Join(group, "cgroup.events")); !strings.Contains(ev, "frozen 1") {
		t.Errorf("the container's group %s after pause: %q; want frozen 1 (the whole container)", group, ev)
	}
	o.ok("resume", "pe1")
	var pids []int
	if err := json.Unmarshal([]byte(o.ok("ps", "--format", "json", "pe1").stdout), &pids); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, app) || !slices.Contains(pids, child) {
		t.Errorf("ps --format json: %v; want the app %d and its child %d", pids, app, child)
	}
	o.ok("kill", "--all", "pe1", "KILL")
	o.waitStatus("pe1", "stopped")
	o.ok("delete", "pe1")
	o.nothingLeft("pe1", app, child)
}

// kill KILL of a paused container kills it without a resume (runc thaws it
// after the signal): the systemd init and an app that is the init.
func TestOCIKillKillOfAPausedContainer(t *testing.T) {
	o := newOCIEnv(t)
	for _, c := range []struct {
		id, sleep string
		hostPID   bool
	}{{"kp1", "4411", false}, {"kp2", "4412", true}} {
		app := o.startFor(c.id, c.hostPID, []string{"sleep", c.sleep}, "/bin/sh", "-c", "sleep 4410 & exec sleep "+c.sleep)
		o.ok("pause", c.id)
		if st := o.state(c.id); st.Status != "paused" {
			t.Fatalf("%s after pause: %s; want paused", c.id, st.Status)
		}
		o.killDelete(c.id, app)
	}
}

// kill --all once an app that was the init has exited signals what it left
// in the container's cgroup (its children, in the host's pid namespace), as
// runc does; a container whose init was PID 1 of its own pid namespace has
// nothing left, and --all succeeds.
func TestOCIKillAllAfterTheAppInitExited(t *testing.T) {
	o := newOCIEnv(t)
	b := hostPIDBundle(o, "b", "/bin/sh", "-c", "sleep 4421 & exit 0")
	o.forID(b, "ke1")
	o.ok("create", "--bundle", b, "ke1")
	o.ok("start", "ke1")
	o.waitStatus("ke1", "stopped")
	child := hostPidOf("sleep", "4421")
	if child == 0 {
		t.Fatal("the app's child (sleep 4421) does not run")
	}
	o.ok("kill", "--all", "ke1", "KILL")
	waitFor(t, 30*time.Second, "kill --all KILL to end what the exited init left", func() bool { return !alive(child) })
	o.fails("not running", "kill", "ke1", "KILL")
	o.ok("delete", "ke1")
	o.nothingLeft("ke1", child)

	b2 := o.bundle("b2", "/bin/true")
	o.forID(b2, "ke2")
	o.ok("create", "--bundle", b2, "ke2")
	o.ok("start", "ke2")
	o.waitStatus("ke2", "stopped")
	o.ok("kill", "--all", "ke2", "KILL")
	o.ok("delete", "ke2")
	o.nothingLeft("ke2")
}

// exec --pid-file writes the caller's path without following a link: not
// one planted at the temporary name next to it (skiff-oci wrote PATH.tmp
// with a plain open, then renamed it), nor one at the path itself; the
// systemd init and an app that is the init.
func TestOCIExecPidFileFollowsNoLink(t *testing.T) {
	o := newOCIEnv(t)
	for _, c := range []struct {
		id, sleep string
		hostPID   bool
	}{{"pf1", "4431", false}, {"pf2", "4432", true}} {
		app := o.startFor(c.id, c.hostPID, []string{"/bin/sleep", c.sleep}, "/bin/sleep", c.sleep)
		victim := filepath.Join(o.dir, c.id+"-victim")
		if err := os.WriteFile(victim, []byte("untouched\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		pidFile := filepath.Join(o.dir, c.id+".pid")
		if err := os.Symlink(victim, pidFile+".tmp"); err != nil {
			t.Fatal(err)
		}
		o.ok("exec", "--detach", "--pid-file", pidFile, c.id, "/bin/sleep", "1")
		if got, _ := os.ReadFile(victim); string(got) != "untouched\n" {
			t.Errorf("%s: exec --pid-file wrote through the link at its temporary name: the link's target holds %q", c.id, got)
		}
		if fi, err := os.Lstat(pidFile); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: the pid file is not a regular file (%v)", c.id, err)
		}
		// A link at the path itself is refused, not written through.
		os.Remove(pidFile)
		if err := os.Symlink(victim, pidFile); err != nil {
			t.Fatal(err)
		}
		if r := o.rt("exec", "--detach", "--pid-file", pidFile, c.id, "/bin/sleep", "1"); r.code == 0 {
			t.Errorf("%s: exec --pid-file at a link: exit 0; want a refusal", c.id)
		}
		if got, _ := os.ReadFile(victim); string(got) != "untouched\n" {
			t.Errorf("%s: exec --pid-file wrote through the link at its path: the link's target holds %q", c.id, got)
		}
		o.killDelete(c.id, app)
	}
}
