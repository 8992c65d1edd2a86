//go:build functional && kvm

package tests

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kvm stage1 flavor (stage1-kvm/): the same pod in a QEMU microvm with its
// own kernel. `make test-kvm` runs the whole conformance suite against it
// (SKIFF_STAGE1) and these tests of what only a VM does; alone:
// `go test -tags 'functional kvm' ./tests -run KVM` with SKIFF_BIN,
// SKIFF_TEST_IMAGES set as for the other functional tests. SKIFF_KVM_STAGE1
// names the image (default: bin/stage1-kvm.oci.tar of this checkout). The VM
// runs under TCG where KVM cannot boot a stock kernel, so each pod takes a
// few seconds.

// kvmEnv is a test env that runs pods with the kvm stage1.
func kvmEnv(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; scripts/install-deps)")
	}
	img := os.Getenv("SKIFF_KVM_STAGE1")
	if img == "" {
		img, _ = filepath.Abs("../bin/stage1-kvm.oci.tar")
	}
	if _, err := os.Stat(img); err != nil {
		t.Skipf("no kvm stage1 image at %s (build it with scripts/build-stage1-kvm, or set SKIFF_KVM_STAGE1): %v", img, err)
	}
	e := newEnv(t)
	e.stage1 = []string{"--stage1-path=" + img}
	return e
}

func hostKernel(t *testing.T) string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func TestKVMGuestKernelOutputAndExitCode(t *testing.T) {
	e := kvmEnv(t)
	start := time.Now()
	r := e.skiff(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", "uname -r; echo hi; echo oops >&2; exit 7")...)
	t.Logf("pod took %v", time.Since(start))
	lines := strings.Split(r.stdout, "\n")
	if r.code != 7 || len(lines) != 3 || lines[1] != "hi" {
		t.Fatalf("exit %d, stdout %q (stderr %q); want 7 and \"RELEASE\\nhi\\n\"", r.code, r.stdout, r.stderr)
	}
	if host := hostKernel(t); lines[0] == "" || lines[0] == host {
		t.Errorf("guest kernel release %q, host's %q: want a release of the guest's own kernel", lines[0], host)
	}
	if !strings.Contains(r.stderr, "oops\n") {
		t.Errorf("stderr %q lacks the app's \"oops\"", r.stderr)
	}
	ps := e.pods()
	if len(ps) != 1 || ps[0].ExitCode == nil || *ps[0].ExitCode != 7 ||
		len(ps[0].Apps) != 1 || ps[0].Apps[0].ExitCode == nil || *ps[0].Apps[0].ExitCode != 7 {
		t.Errorf("list: %+v", ps)
	}
	if out := e.ok("logs", ps[0].UUID).stdout; !strings.Contains(out, "hi") {
		t.Errorf("logs lack the app's output: %q", out)
	}
}

func TestKVMCommandNotFound(t *testing.T) {
	e := kvmEnv(t)
	e.fails(127, []string{"nosuchcmd", "not found"}, e.runArgs(e.image("busybox"), "--", "nosuchcmd")...)
}

// qemuOf says whether a process whose command line names pod uuid exists.
func qemuOf(uuid string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil && bytes.Contains(b, []byte("guest=skiff-"+uuid)) {
			if st, err := os.ReadFile(filepath.Join(filepath.Dir(d), "stat")); err == nil && !bytes.Contains(st, []byte(") Z ")) {
				return true
			}
		}
	}
	return false
}

// startLong starts a pod that runs until stopped and returns its process and UUID.
func startLong(t *testing.T, e *env) (*exec.Cmd, string) {
	t.Helper()
	c := e.cmd(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", "echo up; sleep 1000")...)
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	// 150 s: a boot that hangs is retried (stage1-kvm run.go: 30 s, then 90 s).
	for deadline := time.Now().Add(150 * time.Second); !strings.Contains(out.String(), "up\n"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pod did not start: %s", out.String())
		}
	}
	ps := e.pods()
	if len(ps) != 1 {
		t.Fatalf("pods: %+v", ps)
	}
	if !qemuOf(ps[0].UUID) {
		t.Fatalf("no qemu process for pod %s", ps[0].UUID)
	}
	return c, ps[0].UUID
}

func TestKVMStop(t *testing.T) {
	e := kvmEnv(t)
	c, uuid := startLong(t, e)
	e.ok("stop", uuid)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("skiff run after stop: %v (want exit 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("skiff run still there 30 s after stop")
	}
	if qemuOf(uuid) {
		t.Errorf("qemu of pod %s still running after stop", uuid)
	}
	e.ok("gc", "--grace-period=0")
}

func TestKVMGCAfterSIGKILL(t *testing.T) {
	e := kvmEnv(t)
	c, uuid := startLong(t, e)
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()
	e.ok("gc", "--grace-period=0")
	e.ok("gc", "--grace-period=0")
	for deadline := time.Now().Add(5 * time.Second); qemuOf(uuid); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("qemu of pod %s still running after SIGKILL of skiff and gc", uuid)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(uuid)) {
		t.Errorf("a mount of pod %s is left on the host", uuid)
	}
	if _, err := os.Stat("/run/skiff/netns/" + uuid); err == nil {
		t.Errorf("the network namespace of pod %s (and its tap) is left on the host", uuid)
	}
	if cgs := cgroupsOf(uuid); len(cgs) != 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	if ps := e.pods(); len(ps) != 0 {
		t.Errorf("pods left after gc: %+v", ps)
	}
}

func TestKVMHostVolumeWrittenInTheGuest(t *testing.T) {
	e := kvmEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := t.TempDir()
	file := filepath.Join(t.TempDir(), "single.conf")
	if err := os.WriteFile(file, []byte("one file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.skiff(e.runArgs("--net=none", "--volume="+dir+":/data", "--volume="+ro+":/ro:ro", "--volume="+file+":/etc/single.conf:ro",
		e.image("busybox"), "--", "/bin/sh", "-c",
		"cat /data/in; echo from-guest > /data/out; cat /etc/single.conf; ls /etc/single.conf/.. >/dev/null; "+
			"touch /ro/x 2>/dev/null && echo RO-WRITABLE; exit 0")...)
	if r.code != 0 || r.stdout != "from-host\none file\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil || string(b) != "from-guest\n" {
		t.Errorf("the host sees %q, %v in the volume; want the guest's \"from-guest\"", b, err)
	}
	if entries, _ := os.ReadDir(ro); len(entries) != 0 {
		t.Errorf("a read-only volume was written: %v", entries)
	}
}

func TestKVMPortForwardingFromLoopback(t *testing.T) {
	e := kvmEnv(t)
	port := strconv.Itoa(freePort(t))
	c := e.cmd(e.runArgs("--port="+port+":8080", e.image("busybox"), "--", "/bin/sh", "-c",
		`echo up; while true; do printf 'HTTP/1.0 200 OK\r\n\r\nhello from the guest\n' | nc -l -p 8080; done`)...)
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	waitFor(t, 150*time.Second, "the pod's server", func() bool { return strings.Contains(out.String(), "up\n") })
	waitFor(t, 20*time.Second, "a reply through 127.0.0.1:"+port, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "hello from the guest")
	})
	ps := e.pods()
	if len(ps) != 1 {
		t.Fatalf("pods: %+v", ps)
	}
	e.ok("stop", ps[0].UUID)
	_ = c.Wait()
	e.ok("gc", "--grace-period=0")
	if _, err := os.Stat("/run/skiff/netns/" + ps[0].UUID); err == nil {
		t.Errorf("the pod's network namespace is left after gc")
	}
}

func TestKVMVMSizeFollowsTheLimits(t *testing.T) {
	e := kvmEnv(t)
	r := e.ok(e.runArgs("--net=none", e.image("busybox"), "--memory=256M", "--cpu=1000m", "--", "/bin/sh", "-c",
		"nproc; grep MemTotal /proc/meminfo")...)
	f := strings.Fields(r.stdout)
	if len(f) != 4 || f[0] != "1" {
		t.Fatalf("output %q: want 1 CPU and MemTotal", r.stdout)
	}
	// 256 MiB for the app and 128 MiB for the guest's own: the kernel keeps some.
	if kb := atoi(t, f[2]); kb < 300<<10 || kb > 384<<10 {
		t.Errorf("guest MemTotal %d kB; want about 384 MiB", kb)
	}
	// The app's own limit holds inside the VM (its unit's MemoryMax): over
	// it, the app is OOM-killed and the pod says so.
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r = e.skiff(e.runArgs("--net=none", "--uuid-file-save="+uuidFile, e.image("busybox"), "--memory=16M", "--",
		"/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1")...)
	b, _ := os.ReadFile(uuidFile)
	st := e.ok("status", strings.TrimSpace(string(b))).stdout
	if r.code != 137 || !strings.Contains(st, "oom-killed=true") {
		t.Errorf("over the memory limit: exit %d, status %s", r.code, st)
	}
}

func TestKVMRefusesHostNetwork(t *testing.T) {
	e := kvmEnv(t)
	e.fails(125, []string{"--net=host", "VM"}, e.runArgs("--net=host", e.image("busybox"), "--", "/bin/true")...)
}

func TestKVMTwoAppsShareThePod(t *testing.T) {
	e := kvmEnv(t)
	r := e.skiff(e.runArgs("--net=none", e.image("busybox"), "--name=a", "--", "/bin/sh", "-c",
		"echo a > /dev/shm/x 2>/dev/null; hostname; exit 0", "---",
		e.image("busybox"), "--name=b", "--", "/bin/sh", "-c", "exit 4")...)
	if r.code != 4 {
		t.Fatalf("exit %d, want the failing app's 4; stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	st := e.pods()
	if len(st) != 1 || len(st[0].Apps) != 2 {
		t.Fatalf("pods: %+v", st)
	}
}

func TestKVMCannotExecute(t *testing.T) {
	e := kvmEnv(t)
	e.fails(126, []string{"/etc/passwd"}, e.runArgs(e.image("busybox"), "--exec=/etc/passwd")...)
}

func TestKVMImageConfigAndAppFlags(t *testing.T) {
	e := kvmEnv(t)
	r := e.ok(e.runArgs(e.image("inspect"), "--set-env=FOO=bar", "--working-dir=/tmp", "--", "env", "cwd", "ids")...)
	for _, want := range []string{"FOO=bar\n", "PATH=", "cwd=/tmp\n", "uid=0\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// kvmBoot runs a pod whose first hang boots never come up (stage1-kvm's
// test hook starts their QEMU with its CPUs stopped) with a first boot
// bound of timeout, and returns what it printed and the pod's UUID.
func kvmBoot(t *testing.T, e *env, hang int, timeout string) (result, string) {
	t.Helper()
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	c := e.cmd(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--", "/bin/sh", "-c", "echo hi")...)
	c.Env = append(c.Env, "SKIFF_KVM_TEST_HANG_BOOTS="+strconv.Itoa(hang), "SKIFF_KVM_BOOT_TIMEOUT="+timeout)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(uuidFile)
	uuid := strings.TrimSpace(string(b))
	if uuid == "" {
		t.Fatalf("no pod UUID saved; exit %d, stderr %q", r.code, r.stderr)
	}
	return r, uuid
}

// kvmPodLeftovers lists what of pod uuid's run is left on the host once
// skiff run has returned (before any gc): its QEMU, taps (in its network
// namespace), mounts and cgroups.
func kvmPodLeftovers(e *env, uuid string) []string {
	var left []string
	if qemuOf(uuid) {
		left = append(left, "a qemu process")
	}
	if _, err := os.Stat("/run/skiff/netns/" + uuid); err == nil {
		left = append(left, "its network namespace (and taps)")
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(uuid)) {
		left = append(left, "a mount")
	}
	left = append(left, cgroupsOf(uuid)...)
	socks, _ := filepath.Glob(filepath.Join(e.dir, "pods", "*", uuid, "stage1", "*.sock"))
	return append(left, socks...)
}

// A first boot that hangs (about once in 200 boots under TCG) is killed
// after its bound and the VM booted once more, with one warning line: the
// pod runs as usual.
func TestKVMBootRetriedAfterAHang(t *testing.T) {
	e := kvmEnv(t)
	r, uuid := kvmBoot(t, e, 1, "15s")
	if r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the app's \"hi\" after a second boot", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stderr, "booting its VM again"); n != 1 || !strings.Contains(r.stderr, uuid) {
		t.Errorf("stderr %q: want one warning naming pod %s and the second boot", r.stderr, uuid)
	}
	if left := kvmPodLeftovers(e, uuid); len(left) != 0 {
		t.Errorf("left on the host after the pod ended: %v", left)
	}
}

// When the second boot hangs too, the pod fails with exit 125 and one error
// line naming the pod, the cause and the fix, after the console's tail;
// nothing of the VM is left.
func TestKVMBootFailsAfterTwoHangs(t *testing.T) {
	e := kvmEnv(t)
	r, uuid := kvmBoot(t, e, 2, "3s")
	if r.code != 125 {
		t.Fatalf("exit %d, want 125; stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	for _, w := range []string{"pod " + uuid, "failed to boot 2 times", "did not come up", "SKIFF_KVM_BOOT_TIMEOUT="} {
		if !strings.Contains(last, w) {
			t.Errorf("last stderr line %q lacks %q (stderr %q)", last, w, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "booting its VM again"); n != 1 {
		t.Errorf("stderr %q: want one warning of the second boot", r.stderr)
	}
	if left := kvmPodLeftovers(e, uuid); len(left) != 0 {
		t.Errorf("left on the host after the pod failed: %v", left)
	}
	if ps := e.pods(); len(ps) != 1 || ps[0].ExitCode == nil || *ps[0].ExitCode != 125 {
		t.Errorf("list: %+v; want the pod exited with 125", ps)
	}
}

// Under TCG the VM has one CPU whatever the apps' quotas: two TCG vCPUs hung
// about one boot in 100-200 (stage1-kvm run.go, tcgCPUs).
func TestKVMOneCPUUnderTCG(t *testing.T) {
	e := kvmEnv(t)
	if runtime.NumCPU() < 2 {
		t.Skip("a host with one CPU gives every VM one CPU anyway")
	}
	c := e.cmd(e.runArgs("--net=none", e.image("busybox"), "--", "/bin/sh", "-c", "nproc")...)
	c.Env = append(c.Env, "SKIFF_KVM_ACCEL=tcg")
	out, err := c.Output()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("nproc in a TCG VM of a pod without a CPU quota: %q, %v; want 1", out, err)
	}
}
