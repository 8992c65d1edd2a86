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
	// (Once the app's shell has exec'd sleep: start does not wait for that.)
	var r result
	waitFor(t, 30*time.Second, "exec to see the app's sleep 4200 as PID 1", func() bool {
		r = o.ok("exec", "p1", "/bin/cat", "/proc/1/cmdline")
		return r.stdout == "sleep\x004200\x00" || r.stdout != "/bin/sh\x00-c\x00sleep 4201 & exec sleep 4200\x00"
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
