//go:build functional

package tests

// skiff-oci (issue #14): namespaces joined by path, as a Kubernetes pod's
// containers join the sandbox's, and mount propagation of volumes.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsOf is the namespace link of pid's type ns ("net:[4026...]").
func nsOf(t *testing.T, pid int, ns string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatalf("namespace %s of %d: %v", ns, pid, err)
	}
	return l
}

// A container that joins a sandbox's pid, net, ipc and uts namespaces by
// path: it sees the sandbox's network devices and hostname, and the
// sandbox's pid namespace sees its processes, while systemd is PID 1 of a
// pid namespace of the container's own, nested in the sandbox's.
func TestOCIJoinNamespacesByPath(t *testing.T) {
	o := newOCIEnv(t)
	need(t, "ip")
	// As containerd's shim is: the inits come to this process once the
	// runtime has exited.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Not for the tests after it, which do not reap what comes to them: a
	// detached exec's process left unreaped keeps its container's pid
	// namespace, and so delete --force, waiting (TestOCIExecDetached took
	// the 60 s of delete's bound after this one).
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	sb := o.bundle("sb", "/bin/sleep", "1000")
	o.forID(sb, "ns-sb")
	o.editConfig(sb, func(c map[string]any) { c["hostname"] = "the-sandbox" })
	o.ok("create", "--bundle", sb, "ns-sb")
	o.ok("start", "ns-sb")
	o.waitStatus("ns-sb", "running")
	spid := o.state("ns-sb").Pid
	// A device only the sandbox's network namespace has.
	veth := fmt.Sprintf("skns%d", time.Now().UnixNano()%100000)
	sh(t, o.dir, fmt.Sprintf("ip link add %s type veth peer name %sp && ip link set %s netns %d", veth, veth, veth, spid))
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth+"p").Run() })

	c := o.bundle("c", "/bin/sh", "-c", "echo ran > /tmp/ran; exec sleep 4343")
	o.forID(c, "ns-c")
	o.editConfig(c, func(cfg map[string]any) {
		l := cfg["linux"].(map[string]any)
		delete(cfg, "hostname")
		l["namespaces"] = []any{
			map[string]any{"type": "pid", "path": fmt.Sprintf("/proc/%d/ns/pid", spid)},
			map[string]any{"type": "network", "path": fmt.Sprintf("/proc/%d/ns/net", spid)},
			map[string]any{"type": "ipc", "path": fmt.Sprintf("/proc/%d/ns/ipc", spid)},
			map[string]any{"type": "uts", "path": fmt.Sprintf("/proc/%d/ns/uts", spid)},
			map[string]any{"type": "mount"},
		}
	})
	pidFile := filepath.Join(o.dir, "c.pid")
	o.ok("create", "--bundle", c, "--pid-file", pidFile, "ns-c")
	o.ok("start", "ns-c")
	o.waitStatus("ns-c", "running")
	cpid := o.state("ns-c").Pid
	if raw, _ := os.ReadFile(pidFile); strings.TrimSpace(string(raw)) != fmt.Sprint(cpid) {
		t.Errorf("pid file %q, state pid %d", raw, cpid)
	}
	for _, ns := range []string{"net", "ipc", "uts"} {
		if a, b := nsOf(t, cpid, ns), nsOf(t, spid, ns); a != b {
			t.Errorf("%s namespace: container's %s, sandbox's %s; want the sandbox's", ns, a, b)
		}
	}
	if a, b := nsOf(t, cpid, "pid"), nsOf(t, spid, "pid"); a == b {
		t.Errorf("pid namespace: the container's init shares the sandbox's (%s); systemd needs its own", a)
	}
	// NSpid: host, sandbox, own: the container's init is PID 1 of a namespace
	// nested in the sandbox's (whose own init is PID 1 one level up).
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cpid))
	var nspid []string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "NSpid:") {
			nspid = strings.Fields(l)[1:]
		}
	}
	if len(nspid) != 3 || nspid[2] != "1" {
		t.Errorf("container init NSpid %v; want host, sandbox and 1", nspid)
	}
	var ppid []string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "PPid:") {
			ppid = strings.Fields(l)[1:]
		}
	}
	if len(ppid) != 1 || ppid[0] != fmt.Sprint(os.Getpid()) {
		t.Errorf("container init's parent %v; want the caller (%d), its subreaper", ppid, os.Getpid())
	}
	waitFor(t, 60*time.Second, "the container's app to run", func() bool {
		_, err := os.Stat(filepath.Join(c, "rootfs/tmp/ran"))
		return err == nil
	})
	r := o.ok("exec", "ns-c", "/bin/sh", "-c", "hostname; cat /proc/net/dev")
	if !strings.Contains(r.stdout, "the-sandbox") || !strings.Contains(r.stdout, veth) {
		t.Errorf("in the container: %q; want the sandbox's hostname and device %s", r.stdout, veth)
	}
	// The sandbox's pid namespace (its init's: the sandbox's own app is
	// PID 1 of one nested in it) has the container's app.
	var app int
	for _, q := range nsPidsOf(spid) {
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", q)); string(cmd) == "sleep\x004343\x00" {
			app = q
		}
	}
	if app == 0 {
		t.Errorf("the sandbox's pid namespace does not have the container's app")
	}
	o.ok("kill", "ns-c", "KILL")
	if ws := waitInit(t, cpid); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("container init's status %v; want killed by SIGKILL", ws)
	}
	o.waitStatus("ns-c", "stopped")
	o.ok("delete", "ns-c")
	o.nothingLeft("ns-c", cpid)
	if st := o.state("ns-sb").Status; st != "running" {
		t.Errorf("sandbox %s after the container's delete", st)
	}
	o.ok("delete", "--force", "ns-sb")
	waitInit(t, spid)
	o.nothingLeft("ns-sb", spid)
}

// A namespace path that is not a namespace of its type: a clear error,
// nothing left.
func TestOCINamespacePathErrors(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/true")
	o.forID(b, "nsbad")
	var orig []any
	o.editConfig(b, func(c map[string]any) { orig = c["linux"].(map[string]any)["namespaces"].([]any) })
	for _, tc := range []struct{ typ, path, want string }{
		{"network", "/proc/self/ns/uts", "network path /proc/self/ns/uts: is a namespace of another type"},
		{"pid", "/etc/hostname", "pid path /etc/hostname: not a namespace file"},
		{"ipc", "/no/such/ns", "ipc path /no/such/ns: no such file"},
		{"mount", "/proc/self/ns/mnt", "cannot join another"},
		{"cgroup", "/proc/self/ns/cgroup", "cannot join another"},
	} {
		o.editConfig(b, func(c map[string]any) {
			l := c["linux"].(map[string]any)
			var nss []any
			for _, n := range orig {
				if n.(map[string]any)["type"] != tc.typ {
					nss = append(nss, n)
				}
			}
			l["namespaces"] = append(nss, map[string]any{"type": tc.typ, "path": tc.path})
		})
		o.fails(tc.want, "create", "--bundle", b, "nsbad")
		o.nothingLeft("nsbad")
	}
}

// Mount propagation as Kubernetes asks for it (rootfsPropagation rshared;
// a Bidirectional volume rshared, a HostToContainer one rslave): a mount
// made in the container in the rshared volume shows on the host, and one
// made on the host in the rslave volume shows in the container.
func TestOCIMountPropagation(t *testing.T) {
	o := newOCIEnv(t)
	shared, slave := filepath.Join(o.dir, "shared"), filepath.Join(o.dir, "slave")
	for _, d := range []string{shared, slave} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// as critest does: the host path a shared mount of its own
		if err := syscall.Mount(d, d, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
		d := d
		t.Cleanup(func() {
			for _, m := range mountsUnder(d) {
				syscall.Unmount(m, syscall.MNT_DETACH)
			}
			syscall.Unmount(d, syscall.MNT_DETACH)
		})
		if err := syscall.Mount("", d, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
	}
	b := o.bundle("b", "/bin/sh", "-c",
		"mkdir -p /rs/in && mount -t tmpfs tmpfs /rs/in && touch /rs/in/from-container && exec sleep 1000")
	o.forID(b, "prop")
	o.editConfig(b, func(c map[string]any) {
		c["mounts"] = append(c["mounts"].([]any),
			map[string]any{"destination": "/rs", "type": "bind", "source": shared, "options": []string{"rbind", "rshared"}},
			map[string]any{"destination": "/rl", "type": "bind", "source": slave, "options": []string{"rbind", "rslave"}})
		c["linux"].(map[string]any)["rootfsPropagation"] = "rshared"
		caps := []string{"CAP_SYS_ADMIN", "CAP_KILL"}
		c["process"].(map[string]any)["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
	})
	o.ok("create", "--bundle", b, "prop")
	o.ok("start", "prop")
	o.waitStatus("prop", "running")
	waitFor(t, 60*time.Second, "the container's mount in the rshared volume to reach the host", func() bool {
		_, err := os.Stat(filepath.Join(shared, "in/from-container"))
		return err == nil
	})
	hm := filepath.Join(slave, "hm")
	if err := os.Mkdir(hm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", hm, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hm, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := o.rt("exec", "prop", "/bin/test", "-e", "/rl/hm/from-host"); r.code != 0 {
		t.Errorf("the host's mount in the rslave volume is not in the container: exit %d %s", r.code, r.stderr)
	}
	o.ok("delete", "--force", "prop")
	for _, m := range mountsUnder(o.dir) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	o.nothingLeft("prop")
}

// rootfsPropagation unbindable is the container's root's (runtime-tools'
// linux_rootfs_propagation): create does not fail binding the pod's own
// directories from an unbindable sandbox root, and the app's / is unbindable.
func TestOCIRootfsPropagationUnbindable(t *testing.T) {
	o := newOCIEnv(t)
	vol := filepath.Join(o.dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, prop := range []string{"unbindable", "runbindable", "rprivate"} {
		id := "rp-" + prop
		b := o.bundle(id, "/bin/sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo")
		o.forID(b, id)
		o.editConfig(b, func(c map[string]any) {
			c["linux"].(map[string]any)["rootfsPropagation"] = prop
			c["mounts"] = append(c["mounts"].([]any),
				map[string]any{"destination": "/vol", "type": "bind", "source": vol, "options": []string{"rbind"}})
		})
		r := o.ok("run", "--bundle", b, id)
		unbindable := strings.Contains(r.stdout, "unbindable")
		if want := prop != "rprivate"; unbindable != want {
			t.Errorf("rootfsPropagation %s: the app's / is unbindable=%v, want %v:\n%s%s", prop, unbindable, want, r.stdout, r.stderr)
		}
		o.rt("delete", "--force", id)
		o.nothingLeft(id)
	}
}
