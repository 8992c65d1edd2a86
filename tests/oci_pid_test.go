//go:build functional

package tests

// skiff-oci (issue #14): the app's view of pids. A bundle that asks for a
// new pid namespace (Kubernetes' default) sees its app as PID 1, as under
// runc (critest's ContainerPID), with the bundle's /proc masks in that view;
// exec sees the same; systemd is still the container's init.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostPidOf is the host pid of the process whose command line is argv
// (NUL-separated), 0 when there is none.
func hostPidOf(argv ...string) int {
	want := []byte(strings.Join(argv, "\x00") + "\x00")
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Equal(b, want) {
			return pid
		}
	}
	return 0
}

func TestOCIAppIsPID1OfItsPidNamespace(t *testing.T) {
	o := newOCIEnv(t)
	// A masked file and directory that this kernel has, with content.
	maskedFile := ""
	for _, f := range []string{"/proc/timer_list", "/proc/keys", "/proc/kcore"} {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			maskedFile = f
			break
		}
	}
	if es, err := os.ReadDir("/proc/irq"); maskedFile == "" || err != nil || len(es) == 0 {
		t.Skip("this kernel has none of /proc/timer_list, /proc/keys, /proc/kcore with content, or an empty /proc/irq")
	}
	b := o.bundle("b", "/bin/sh", "-c", "sleep 4201 & exec sleep 4200")
	o.forID(b, "p1")
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["maskedPaths"] = []string{maskedFile, "/proc/irq"}
		l["readonlyPaths"] = []string{"/proc/sys", "/proc/sysrq-trigger"}
	})
	o.ok("create", "--bundle", b, "p1")
	o.ok("start", "p1")
	o.waitStatus("p1", "running")
	initPid := o.state("p1").Pid
	// What the app and exec see: the app is PID 1 (critest's ContainerPID
	// reads /proc/1/cmdline), with what it started; not systemd.
	// (Once skiff's app-exec has exec'd the app's shell and the shell sleep:
	// start does not wait for either.)
	var r result
	waitFor(t, 30*time.Second, "exec to see the app's sleep 4200 as PID 1", func() bool {
		r = o.ok("exec", "p1", "/bin/cat", "/proc/1/cmdline")
		starting := r.stdout == "/bin/sh\x00-c\x00sleep 4201 & exec sleep 4200\x00" || strings.HasPrefix(r.stdout, "app-exec\x00")
		return !starting
	})
	if r.stdout != "sleep\x004200\x00" {
		t.Errorf("exec: /proc/1/cmdline is %q; want the app's, sleep 4200", r.stdout)
	}
	// The app runs (start returns before it does, as runc's): the init is
	// systemd by now.
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", initPid)); filepath.Base(exe) != "systemd" {
		t.Errorf("the container's init (pid %d) is %q; want systemd", initPid, exe)
	}
	r = o.ok("exec", "p1", "/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
	if !strings.Contains(r.stdout, "sleep 4201") || strings.Contains(r.stdout, "systemd") {
		t.Errorf("exec: the processes it sees: %q; want the app's (sleep 4201) and not systemd", r.stdout)
	}
	// The masks hold in the app's own procfs: a masked file reads empty, a
	// masked directory is empty, a read-only path refuses a write (of a
	// namespaced value: harmless if it went through).
	r = o.rt("exec", "p1", "/bin/sh", "-c", "head -c 16 "+maskedFile+" | wc -c; ls -A /proc/irq | wc -l; "+
		"cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname && echo WROTE")
	if f := strings.Fields(r.stdout); len(f) < 2 || f[0] != "0" || f[1] != "0" || strings.Contains(r.stdout, "WROTE") ||
		!strings.Contains(r.stderr, "Read-only file system") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("masks in the app's procfs: stdout %q, stderr %q; want %s empty, /proc/irq empty and /proc/sys read-only", r.stdout, r.stderr, maskedFile)
	}
	// A pid the host can see for the app: its pid namespace is nested in
	// the init's.
	app := hostPidOf("sleep", "4200")
	child := hostPidOf("sleep", "4201")
	if app == 0 || child == 0 {
		t.Fatalf("the app's processes are not visible from the host (%d, %d)", app, child)
	}
	if nsOf(t, app, "pid") == nsOf(t, initPid, "pid") {
		t.Errorf("the app is in its init's pid namespace; want one of its own")
	}
	// kill --all reaches the processes of the app's namespace too: the
	// app's child ends (the app, PID 1 without a handler, ignores SIGTERM,
	// as under runc).
	o.ok("kill", "--all", "p1", "TERM")
	waitFor(t, 30*time.Second, "kill --all TERM to end the app's child", func() bool { return hostPidOf("sleep", "4201") == 0 })
	o.ok("kill", "p1", "KILL")
	o.waitStatus("p1", "stopped")
	o.ok("delete", "p1")
	o.nothingLeft("p1", initPid, app, child)
}

// The bundle's /proc paths are masked in the app's own procfs as they read
// cleaned: "/proc/net/../F" is /proc/F (the kernel would take /proc/net's
// link to /proc/PID/net and find no /proc/PID/F: no mask), "/proc/./irq/"
// is /proc/irq.
func TestOCINestedProcMasksTakeCleanedPaths(t *testing.T) {
	o := newOCIEnv(t)
	if o.isRunc {
		t.Skip("skiff-oci's rule for the nested procfs: the bundle's /proc paths taken cleaned")
	}
	maskedFile := ""
	for _, f := range []string{"/proc/timer_list", "/proc/keys", "/proc/kcore"} {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			if _, err := os.Stat("/proc/self/" + filepath.Base(f)); os.IsNotExist(err) {
				maskedFile = f
				break
			}
		}
	}
	if es, err := os.ReadDir("/proc/irq"); maskedFile == "" || err != nil || len(es) == 0 {
		t.Skip("this kernel has none of /proc/timer_list, /proc/keys, /proc/kcore with content, or an empty /proc/irq")
	}
	b := o.bundle("b", "/bin/sleep", "4202")
	o.forID(b, "p1")
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["maskedPaths"] = []string{"/proc/net/../" + filepath.Base(maskedFile), "/proc/./irq/"}
		l["readonlyPaths"] = []string{"/proc//sys/."}
	})
	o.ok("create", "--bundle", b, "p1")
	o.ok("start", "p1")
	o.waitStatus("p1", "running")
	r := o.rt("exec", "p1", "/bin/sh", "-c", "head -c 16 "+maskedFile+" | wc -c; ls -A /proc/irq | wc -l; "+
		"cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname && echo WROTE")
	if f := strings.Fields(r.stdout); len(f) < 2 || f[0] != "0" || f[1] != "0" || strings.Contains(r.stdout, "WROTE") ||
		!strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("masks in the app's procfs: stdout %q, stderr %q; want %s empty, /proc/irq empty and /proc/sys read-only", r.stdout, r.stderr, maskedFile)
	}
	initPid := o.state("p1").Pid
	app := hostPidOf("/bin/sleep", "4202")
	o.ok("kill", "p1", "KILL")
	o.waitStatus("p1", "stopped")
	o.ok("delete", "p1")
	o.nothingLeft("p1", initPid, app)
}

// hostPIDBundle is a bundle whose linux.namespaces has no pid entry (the
// host's: Kubernetes' hostPID, podman's --pid=host).
func hostPIDBundle(o *ociEnv, name string, argv ...string) string {
	b := o.bundle(name, argv...)
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		var nss []any
		for _, n := range l["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "pid" {
				nss = append(nss, n)
			}
		}
		l["namespaces"] = nss
	})
	return b
}

// A bundle without a pid namespace runs its app as the container's init in
// the host's pid namespace (app-as-init, as runc does): the pid in state is
// the app's host pid, not systemd's; the app sees the host's processes; a
// signal reaches its handler as given; exec runs in the container's root
// with its capabilities and the app's mount namespace; the exit status is
// the caller's; SIGKILL and delete leave no process of it (its children do
// not die with it in the host's pid namespace).
func TestOCIHostPIDAppIsTheInit(t *testing.T) {
	o := newOCIEnv(t)
	b := hostPIDBundle(o, "b", "/bin/sh", "-c",
		"trap 'echo term > /tmp/got-term; exit 7' TERM; sleep 4310 & ls /proc > /tmp/procs; touch /tmp/ready; wait $!")
	o.forID(b, "hp1")
	if err := os.WriteFile(filepath.Join(b, "rootfs/hostpid-marker"), []byte("in-the-root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"}
	o.editConfig(b, func(c map[string]any) {
		c["process"].(map[string]any)["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
	})
	o.ok("create", "--bundle", b, "hp1")
	pid := o.state("hp1").Pid
	o.ok("start", "hp1")
	waitFor(t, 60*time.Second, "the app to run", func() bool {
		_, err := os.Stat(filepath.Join(b, "rootfs/tmp/ready"))
		return err == nil
	})
	if st := o.state("hp1"); st.Pid != pid || st.Status != "running" {
		t.Errorf("state after start: %+v; want running with the pid of create, %d", st, pid)
	}
	// The init is the app (busybox's sh), in the host's pid namespace.
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "systemd" || filepath.Base(exe) == "stage1" || exe == "" {
		t.Errorf("the container's init (pid %d) is %q; want the app", pid, exe)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.HasPrefix(cmd, []byte("/bin/sh\x00-c\x00")) {
		t.Errorf("the container's init (pid %d) runs %q; want the app, /bin/sh -c ...", pid, cmd)
	}
	if nsOf(t, pid, "pid") != nsOf(t, os.Getpid(), "pid") {
		t.Errorf("the app is not in the host's pid namespace")
	}
	if nsOf(t, pid, "mnt") == nsOf(t, os.Getpid(), "mnt") {
		t.Errorf("the app is in the host's mount namespace")
	}
	procs, _ := os.ReadFile(filepath.Join(b, "rootfs/tmp/procs"))
	if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("the app's /proc does not list the test's pid %d: %q", os.Getpid(), procs)
	}
	child := hostPidOf("sleep", "4310")
	if child == 0 {
		t.Fatal("the app's child (sleep 4310) is not visible from the host")
	}
	// exec: the container's root, the app's mount namespace and
	// capabilities, the host's pid namespace, its exit status.
	r := o.rt("exec", "hp1", "/bin/sh", "-c", fmt.Sprintf("cat /hostpid-marker; readlink /proc/self/ns/mnt; grep CapBnd /proc/self/status; test -d /proc/%d && echo sees-host; exit 3", os.Getpid()))
	wantBnd := ""
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "CapBnd:") {
				wantBnd = l
			}
		}
	}
	if r.code != 3 || !strings.Contains(r.stdout, "in-the-root") || !strings.Contains(r.stdout, nsOf(t, pid, "mnt")) ||
		wantBnd == "" || !strings.Contains(r.stdout, wantBnd) || !strings.Contains(r.stdout, "sees-host") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 3, the marker, the app's mount namespace %s, %q and sees-host",
			r.code, r.stdout, r.stderr, nsOf(t, pid, "mnt"), wantBnd)
	}
	// exec --detach --pid-file: the process's host pid, in the app's
	// cgroups and mount namespace.
	proc := filepath.Join(o.dir, "process.json")
	os.WriteFile(proc, []byte(`{"args": ["/bin/sleep", "4313"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}`), 0o644)
	pidFile := filepath.Join(o.dir, "exec.pid")
	o.ok("exec", "--process", proc, "--detach", "--pid-file", pidFile, "hp1")
	raw, _ := os.ReadFile(pidFile)
	xpid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	waitFor(t, 30*time.Second, "the detached exec to be the process", func() bool { return hostPidOf("/bin/sleep", "4313") == xpid })
	appCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	xCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", xpid))
	if len(appCg) == 0 || string(appCg) != string(xCg) || nsOf(t, xpid, "mnt") != nsOf(t, pid, "mnt") {
		t.Errorf("detached exec (pid %d): cgroups %q, mount namespace %s; want the app's, %q and %s",
			xpid, xCg, nsOf(t, xpid, "mnt"), appCg, nsOf(t, pid, "mnt"))
	}
	// TERM reaches the app's handler as given; its status is the init's.
	o.ok("kill", "hp1", "TERM")
	o.waitStatus("hp1", "stopped")
	if got, _ := os.ReadFile(filepath.Join(b, "rootfs/tmp/got-term")); string(got) != "term\n" {
		t.Errorf("kill TERM: the app's trap did not run (%q)", got)
	}
	// The child outlives the app (host pid namespace, as under runc) until
	// delete, which leaves nothing.
	o.ok("delete", "hp1")
	o.nothingLeft("hp1", pid, child, xpid)

	// run: the app's exit status is the caller's.
	b2 := hostPIDBundle(o, "b2", "/bin/sh", "-c", "exit 5")
	o.forID(b2, "hp2")
	if r := o.rt("run", "--bundle", b2, "hp2"); r.code != 5 {
		t.Errorf("run of a host-pid bundle: exit %d, stderr %q; want the app's 5", r.code, r.stderr)
	}
	o.nothingLeft("hp2")

	// SIGKILL kills every process of the container, the app's children
	// too. The host's pid namespace given by path (containerd 1.6 gives a
	// hostPID pod's containers the pause container's) is the same.
	b3 := hostPIDBundle(o, "b3", "/bin/sh", "-c", "sleep 4311 & exec sleep 4312")
	o.forID(b3, "hp3")
	o.editConfig(b3, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "pid", "path": fmt.Sprintf("/proc/%d/ns/pid", os.Getpid())})
	})
	o.ok("create", "--bundle", b3, "hp3")
	o.ok("start", "hp3")
	waitFor(t, 60*time.Second, "the app and its child to run", func() bool { return hostPidOf("sleep", "4311") != 0 && hostPidOf("sleep", "4312") != 0 })
	c3, a3 := hostPidOf("sleep", "4311"), hostPidOf("sleep", "4312")
	if st := o.state("hp3"); st.Pid != a3 || nsOf(t, a3, "pid") != nsOf(t, os.Getpid(), "pid") {
		t.Errorf("host's pid namespace by path: state's pid %d, the app's %d (pid namespace %s); want the app's, in the host's",
			st.Pid, a3, nsOf(t, a3, "pid"))
	}
	o.ok("kill", "hp3", "KILL")
	o.waitStatus("hp3", "stopped")
	waitFor(t, 30*time.Second, "kill KILL to end the app's child", func() bool { return !alive(c3) })
	o.ok("delete", "hp3")
	o.nothingLeft("hp3", a3, c3)

	// A terminal: the pty sent over the console socket is the app's.
	b4 := hostPIDBundle(o, "b4", "/bin/sh", "-c", "tty; echo on-the-tty")
	o.forID(b4, "hp4")
	o.editConfig(b4, func(c map[string]any) { c["process"].(map[string]any)["terminal"] = true })
	sock, master := consoleReceiver(t)
	o.ok("create", "--bundle", b4, "--console-socket", sock, "hp4")
	o.ok("start", "hp4")
	if out := readPty(t, master); !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "on-the-tty") {
		t.Errorf("the app on its terminal wrote %q; want its /dev/pts/N and on-the-tty", out)
	}
	o.waitStatus("hp4", "stopped")
	o.ok("delete", "hp4")
	o.nothingLeft("hp4")
}

// alive says whether pid runs (is there and not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !bytes.Contains(b, []byte(") Z "))
}

// A signal right after start reaches the handler of an app that is the
// init: start returns before the app runs (as runc's), kill waits until
// the init has become the app.
func TestOCIHostPIDSignalRightAfterStart(t *testing.T) {
	o := newOCIEnv(t)
	b := hostPIDBundle(o, "b", "/bin/sh", "-c", "trap 'touch /tmp/got-usr1; exit 0' USR1; sleep 1000 & wait $!")
	signalRightAfterStart(t, o, b, "hsig", 4)
}
