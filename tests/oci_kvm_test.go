//go:build functional && kvm

package tests

// skiff-oci-kvm: runc's command line with each container in a microVM (the
// kvm stage1's OCI mode, issue #14 Done-means 4). The runtime is skiff-oci
// beside SKIFF_BIN called by the name skiff-oci-kvm (a link in a temporary
// directory; the name selects the stage1 stage1-kvm.oci.tar beside the
// binary). Each container boots a VM (TCG here: seconds each), so these
// tests are few and use generous deadlines.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newOCIKVMEnv is newOCIEnv with skiff-oci-kvm as the runtime.
func newOCIKVMEnv(t *testing.T) *ociEnv {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; scripts/install-deps)")
	}
	o := newOCIEnv(t)
	if os.Getenv("SKIFF_OCI_RUNTIME") != "" {
		t.Skip("SKIFF_OCI_RUNTIME names another runtime; these tests are skiff-oci-kvm's")
	}
	link := filepath.Join(o.dir, "bin", "skiff-oci-kvm")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.Abs(o.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	o.bin, o.isRunc = link, false
	return o
}

// qemuPid is the container's QEMU, as its supervisor recorded it.
func qemuPid(o *ociEnv, id string) int {
	raw, _ := os.ReadFile(filepath.Join(o.root, id, "stage1", "qemu-pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid
}

// create, start, state, exec (args, --process with its user and cwd,
// --detach), kill TERM (the app's clean stop), delete, run's exit code: the
// app in a VM with its own kernel, the bundle's rootfs shared in place, and
// nothing left behind.
func TestOCIKVMLifecycle(t *testing.T) {
	o := newOCIKVMEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "uname -r > /tmp/started; trap 'echo stopping; exit 0' TERM; while :; do sleep 1; done")
	o.forID(b, "v1")
	pidFile := filepath.Join(o.dir, "v1.pid")
	o.ok("create", "--bundle", b, "--pid-file", pidFile, "v1")
	s := o.state("v1")
	raw, err := os.ReadFile(pidFile)
	if err != nil || strconv.Itoa(s.Pid) != strings.TrimSpace(string(raw)) || s.Status != "created" {
		t.Fatalf("after create: state %+v, pid file %q (%v)", s, raw, err)
	}
	if _, err := os.Stat(filepath.Join(b, "rootfs/tmp/started")); err == nil {
		t.Fatal("the app ran before start")
	}
	o.ok("start", "v1")
	o.waitStatus("v1", "running")
	var kernel []byte
	waitFor(t, 120*time.Second, "the app to run", func() bool {
		kernel, err = os.ReadFile(filepath.Join(b, "rootfs/tmp/started"))
		return err == nil && len(kernel) > 0
	})
	if k := strings.TrimSpace(string(kernel)); k == "" || k == hostKernel(t) {
		t.Errorf("the app's kernel is %q, the host's is %q: not in a VM", k, hostKernel(t))
	}
	if st := o.state("v1"); st.Pid != s.Pid || st.Status != "running" {
		t.Errorf("after start: state %+v, want running with pid %d", st, s.Pid)
	}
	qemu := qemuPid(o, "v1")
	if qemu <= 0 {
		t.Errorf("no QEMU pid recorded")
	}

	r := o.rt("exec", "v1", "/bin/sh", "-c", "echo in-the-vm; exit 3")
	if r.code != 3 || !strings.Contains(r.stdout, "in-the-vm") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 3 and the line", r.code, r.stdout, r.stderr)
	}
	// With a terminal (podman exec -t): the pty's master comes over the
	// console socket, and in the VM the pty is the app's own /dev/pts/N.
	sock, master := consoleReceiver(t)
	if r := o.rt("exec", "--tty", "--console-socket", sock, "v1", "/bin/sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo exec-on-a-tty $(tty)"); r.code != 0 {
		t.Errorf("exec --tty: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if text := readPty(t, master); !strings.Contains(text, "exec-on-a-tty /dev/pts/") {
		t.Errorf("exec --tty printed %q, want exec-on-a-tty /dev/pts/N", text)
	}
	proc := filepath.Join(o.dir, "process.json")
	os.WriteFile(proc, []byte(`{"args": ["/bin/sh", "-c", "echo user=$(id -u) cwd=$(pwd) x=$X; exit 4"], "cwd": "/tmp",
		"env": ["PATH=/bin:/usr/bin", "X=from-the-spec"], "user": {"uid": 1000, "gid": 1000}}`), 0o644)
	r = o.rt("exec", "--process", proc, "v1")
	if want := "user=1000 cwd=/tmp x=from-the-spec"; r.code != 4 || !strings.Contains(r.stdout, want) {
		t.Errorf("exec --process: exit %d, stdout %q, stderr %q; want 4 and %q", r.code, r.stdout, r.stderr, want)
	}
	// Detached, as podman's conmon and containerd's shim send it: the pid
	// is a host process that ends with the exec'd process's status.
	os.WriteFile(proc, []byte(`{"args": ["/bin/sh", "-c", "echo detached > /tmp/exec-ran; exit 5"], "cwd": "/",
		"env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}`), 0o644)
	xpidFile := filepath.Join(o.dir, "exec.pid")
	o.ok("exec", "--process", proc, "--detach", "--pid-file", xpidFile, "v1")
	raw, err = os.ReadFile(xpidFile)
	xpid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || xpid <= 0 {
		t.Fatalf("exec --pid-file: %q, %v", raw, err)
	}
	waitFor(t, 120*time.Second, "the detached exec to run", func() bool {
		_, err := os.Stat(filepath.Join(b, "rootfs/tmp/exec-ran"))
		return err == nil
	})

	o.ok("kill", "v1", "TERM")
	waitFor(t, 120*time.Second, "v1 to stop", func() bool { return o.state("v1").Status == "stopped" })
	if x, err := os.ReadFile(filepath.Join(o.root, "v1", "apps", "app", "exit.json")); err != nil || !strings.Contains(string(x), `"code": 0`) {
		t.Errorf("after kill TERM: exit record %q (%v); want code 0 (the app's trap)", x, err)
	}
	o.fails("container not running", "kill", "v1", "KILL")
	if r := o.rt("exec", "v1", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "stopped") {
		t.Errorf("exec in a stopped container: exit %d, %q", r.code, r.stderr)
	}
	o.ok("delete", "v1")
	o.nothingLeft("v1", s.Pid, qemu, xpid)

	// run: the app's exit status and its output on the caller's stdout.
	b2 := o.bundle("b2", "/bin/sh", "-c", "echo hello from the vm; exit 7")
	o.forID(b2, "r1")
	r = o.rt("run", "--bundle", b2, "r1")
	if r.code != 7 || !strings.Contains(r.stdout, "hello from the vm") {
		t.Errorf("run: exit %d, stdout %q, stderr %q; want 7 and the app's line", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("run: the stage1's warnings reach the container's stderr: %q", r.stderr)
	}
	o.nothingLeft("r1")
}

// What a VM cannot honour is refused at create with one line, before
// anything runs, and leaves nothing; kill -9 of the runtime during create
// and SIGKILL of a running container, then delete --force, leave nothing
// either (no supervisor, no QEMU, no cgroup).
func TestOCIKVMRefusesAndCleansUp(t *testing.T) {
	o := newOCIKVMEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "n1")
	setNS := func(ns []map[string]any) {
		o.editConfig(b, func(c map[string]any) {
			var l []any
			for _, n := range ns {
				l = append(l, n)
			}
			c["linux"].(map[string]any)["namespaces"] = l
		})
	}
	base := []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}
	setNS(append(base, map[string]any{"type": "network", "path": "/proc/self/ns/net"}))
	o.fails("a VM cannot join", "create", "--bundle", b, "n1")
	o.ok("delete", "--force", "n1")
	o.nothingLeft("n1")
	setNS(base) // no network namespace: the host's network
	o.fails("a VM cannot share the host's network", "create", "--bundle", b, "n1")
	o.ok("delete", "--force", "n1")
	o.nothingLeft("n1")
	setNS(append(base[1:], map[string]any{"type": "network"})) // no pid namespace: the host's
	o.fails("the VM's guest has its own kernel and pid namespace, so the host's cannot be given", "create", "--bundle", b, "n1")
	o.ok("delete", "--force", "n1")
	o.nothingLeft("n1")
	setNS(append(base, map[string]any{"type": "network"}))

	// kill -9 of the runtime once the stage1 works in the pod directory.
	o.forID(b, "k1")
	c := exec.Command(o.bin, "--root", o.root, "create", "--bundle", b, "k1")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	waitFor(t, 60*time.Second, "create to reach the stage1", func() bool {
		select {
		case <-done:
			return true
		default:
		}
		_, err := os.Stat(filepath.Join(o.root, "k1", "stage1"))
		return err == nil
	})
	c.Process.Signal(syscall.SIGKILL)
	<-done
	o.ok("delete", "--force", "k1")
	o.nothingLeft("k1")
	if out, _ := exec.Command("pgrep", "-f", "oci-run.* k1$").Output(); len(out) != 0 {
		t.Errorf("a supervisor of k1 outlived its killed create: pids %s", out)
	}

	// SIGKILL of a running container: the VM goes with its supervisor.
	o.forID(b, "k2")
	o.ok("create", "--bundle", b, "k2")
	o.ok("start", "k2")
	o.waitStatus("k2", "running")
	pid, qemu := o.state("k2").Pid, qemuPid(o, "k2")
	if qemu <= 0 || syscall.Kill(qemu, 0) != nil {
		t.Fatalf("k2: no live QEMU (pid %d)", qemu)
	}
	o.ok("kill", "k2", "KILL")
	waitFor(t, 60*time.Second, "k2 to stop", func() bool { return o.state("k2").Status == "stopped" })
	o.ok("delete", "k2")
	o.nothingLeft("k2", pid, qemu)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", qemu)); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", qemu)); strings.Contains(string(b), "skiff-k2") {
			t.Errorf("k2's QEMU (pid %d) outlived delete", qemu)
		}
	}
}

// ociKVMNetNS makes a network namespace as podman's default network leaves
// it for the runtime (a veth with an address and a default route; the
// host's end holds the gateway), with names of this test's own; it is
// removed when the test ends. It returns the namespace's path, the guest's
// address and the gateway's.
func ociKVMNetNS(t *testing.T) (path, addr, gw string) {
	t.Helper()
	need(t, "ip", "tc")
	n := os.Getpid()%100000 + 1
	name, host := fmt.Sprintf("skiff-ocikvm-%d", n), fmt.Sprintf("skvh%d", n)
	x := n%200 + 20
	addr, gw = fmt.Sprintf("10.213.%d.2", x), fmt.Sprintf("10.213.%d.1", x)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", name).Run()
	})
	sh(t, "/", fmt.Sprintf(`set -e
ip netns add %[1]s
ip link add %[2]s type veth peer name %[2]sc
ip link set %[2]sc netns %[1]s
ip -n %[1]s link set %[2]sc name eth0
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[3]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s route add default via %[4]s
ip addr add %[4]s/24 dev %[2]s
ip link set %[2]s up`, name, host, addr, gw))
	return "/run/netns/" + name, addr, gw
}

// podman's default network: the bundle joins a network namespace by path
// that already has a veth with an address and routes (and binds its
// resolv.conf over /etc/resolv.conf). The guest takes that interface over:
// the app in the VM answers on the namespace's address, reaches the host
// through the namespace's gateway and reads the bundle's resolv.conf; once
// the container is gone the namespace is as it was (no tap, no redirect).
func TestOCIKVMJoinsTheBundlesNetwork(t *testing.T) {
	o := newOCIKVMEnv(t)
	nsPath, addr, gw := ociKVMNetNS(t)
	l, err := net.Listen("tcp", gw+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from-the-host\n") })}
	go srv.Serve(l)
	defer srv.Close()
	b := o.bundle("b", "/bin/sh", "-c", fmt.Sprintf(`cat /etc/resolv.conf > /tmp/resolv
wget -q -O /tmp/fetched http://%s/ || echo "wget failed: $?" > /tmp/fetched
mkdir -p /www && echo from-the-guest > /www/index.html && exec httpd -f -p 8080 -h /www`, l.Addr()))
	o.forID(b, "net1")
	resolv := filepath.Join(o.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+gw+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.editConfig(b, func(c map[string]any) {
		lx := c["linux"].(map[string]any)
		var nss []any
		for _, n := range lx["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "network" {
				nss = append(nss, n)
			}
		}
		lx["namespaces"] = append(nss, map[string]any{"type": "network", "path": nsPath})
		c["mounts"] = append(c["mounts"].([]any), map[string]any{"destination": "/etc/resolv.conf", "type": "bind",
			"source": resolv, "options": []string{"rbind", "ro"}})
	})
	o.ok("create", "--bundle", b, "net1")
	o.ok("start", "net1")
	pid, qemu := o.state("net1").Pid, qemuPid(o, "net1")
	client := &http.Client{Timeout: 5 * time.Second}
	var body []byte
	waitFor(t, 120*time.Second, "the app in the guest to answer on "+addr, func() bool {
		r, err := client.Get("http://" + addr + ":8080/")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		body, _ = io.ReadAll(r.Body)
		return true
	})
	if string(body) != "from-the-guest\n" {
		t.Errorf("%s:8080 answered %q, want the guest's page", addr, body)
	}
	o.ok("kill", "net1", "TERM")
	waitFor(t, 120*time.Second, "net1 to stop", func() bool { return o.state("net1").Status == "stopped" })
	// the guest's writes to its rootfs (9p, cached) are all there once it is off
	if k, err := os.ReadFile(filepath.Join(b, "rootfs/tmp/fetched")); err != nil || string(k) != "from-the-host\n" {
		t.Errorf("the guest's fetch from the host (%s): %q, %v", l.Addr(), k, err)
	}
	if r, err := os.ReadFile(filepath.Join(b, "rootfs/tmp/resolv")); err != nil || string(r) != "nameserver "+gw+"\n" {
		t.Errorf("the guest's /etc/resolv.conf: %q, %v; want the bundle's", r, err)
	}
	o.ok("delete", "net1")
	o.nothingLeft("net1", pid, qemu)
	name := filepath.Base(nsPath)
	if out, err := exec.Command("ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", "eth0", "ingress").CombinedOutput(); err != nil || strings.Contains(string(out), "ingress") {
		t.Errorf("eth0 keeps an ingress qdisc after delete: %s (%v)", out, err)
	}
	if out, err := exec.Command("ip", "-n", name, "-o", "link").CombinedOutput(); err != nil || strings.Contains(string(out), "tap") {
		t.Errorf("the namespace's links after delete: %s (%v); want no tap", out, err)
	}
}

// The bundle's masked and read-only paths in its rootfs are the guest's
// mounts, as the default stage1 makes them (ociMaskedAndReadonlyPaths).
func TestOCIKVMMaskedAndReadonlyPathsInTheRootfs(t *testing.T) {
	ociMaskedAndReadonlyPaths(t, newOCIKVMEnv(t))
}

// linux.sysctl (the namespaced ones runc accepts) is the guest kernel's, set
// before the app starts; linux.devices that the guest's kernel has (a fifo,
// its null under another name) are made in the app's /dev, in the guest,
// with the bundle's mode and owner, not in the bundle's rootfs on the host.
func TestOCIKVMSysctlsAndDevices(t *testing.T) {
	o := newOCIKVMEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", `echo "fwd=$(cat /proc/sys/net/ipv4/ip_forward) shmmax=$(cat /proc/sys/kernel/shmmax) dom=$(cat /proc/sys/kernel/domainname)";
		[ -p /dev/skfifo ] && stat -c 'fifo %a %u:%g' /dev/skfifo; stat -c 'null2 %t:%T %a %u:%g' /dev/null2; echo x > /dev/null2 && echo null2-writes;
		[ -p /dev/skfifo2 ] && [ -p /dev/sub/skfifo3 ] && [ -p /dev/hostile/skfifo4 ] && echo odd-paths-made`)
	o.forID(b, "sd")
	// A hostile rootfs: a link in its /dev to the rootfs's /etc. The guest's
	// /dev is a tmpfs that hides it: the node is made there, not through the
	// link on the host.
	if err := os.MkdirAll(filepath.Join(b, "rootfs", "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(b, "rootfs", "dev", "hostile")); err != nil {
		t.Fatal(err)
	}
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		l["sysctl"] = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789", "kernel.domainname": "skiffdom"}
		l["devices"] = []map[string]any{
			{"path": "/dev/skfifo", "type": "p", "fileMode": 0o600, "uid": 1000, "gid": 0},
			{"path": "/dev/null2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o660, "uid": 0, "gid": 1001},
			{"path": "/dev//skfifo2", "type": "p"},
			{"path": "/dev/./sub/skfifo3", "type": "p"},
			{"path": "/dev/hostile/skfifo4", "type": "p"},
		}
	})
	r := o.ok("run", "--bundle", b, "sd")
	for _, want := range []string{"fwd=1 shmmax=123456789 dom=skiffdom\n", "fifo 600 1000:0\n", "null2 1:3 660 0:1001\n", "null2-writes\n", "odd-paths-made\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	for _, f := range []string{"dev/skfifo", "dev/null2", "dev/skfifo2", "dev/sub", "etc/skfifo4"} {
		if _, err := os.Lstat(filepath.Join(b, "rootfs", f)); err == nil {
			t.Errorf("%s was made in the bundle's rootfs on the host", f)
		}
	}
	o.rt("delete", "--force", "sd")
	o.nothingLeft("sd")
}

// A device the guest's kernel does not have (a host disk) and a sysctl of
// no namespace of the container's are refused at create, with one line
// naming them, and nothing is left.
func TestOCIKVMRefusesHostDevicesAndSysctls(t *testing.T) {
	o := newOCIKVMEnv(t)
	b := o.bundle("b", "/bin/true")
	o.forID(b, "hd")
	for _, c := range []struct {
		key  string
		val  any
		want string
	}{
		{"devices", []map[string]any{{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}}, "/dev/sda (b 8:0) is a host device"},
		{"devices", []map[string]any{{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}}, "/dev/kvm (c 10:232) is a host device"},
		{"devices", []map[string]any{{"path": "/etc/null", "type": "c", "major": 1, "minor": 3}}, "under /dev only"},
		{"sysctl", map[string]string{"kernel.panic": "1"}, `"kernel.panic" is not in a separate kernel namespace`},
	} {
		o.editConfig(b, func(conf map[string]any) {
			l := conf["linux"].(map[string]any)
			delete(l, "devices")
			delete(l, "sysctl")
			l[c.key] = c.val
		})
		o.fails(c.want, "create", "--bundle", b, "hd")
		o.nothingLeft("hd")
		if _, err := os.Stat(filepath.Join(o.root, "hd")); err == nil {
			o.rt("delete", "--force", "hd")
		}
	}
}
