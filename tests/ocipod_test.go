//go:build functional

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/ocipod"
)

// ociBundle unpacks the busybox test image into a bundle (umoci) whose
// process runs args.
func ociBundle(t *testing.T, e *env, args ...string) string {
	t.Helper()
	need(t, "umoci", "tar")
	dir := t.TempDir()
	sh(t, dir, `mkdir L && tar -xf `+filepath.Join(e.images, "busybox.oci.tar")+` -C L`+
		` && tag=$(umoci ls --layout L | head -n1) && umoci unpack --image "L:$tag" B >/dev/null`)
	bundle := filepath.Join(dir, "B")
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Args, spec.Process.Terminal = args, false
	raw, _ = json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// ociStage1 is the stage1 under test: SKIFF_STAGE1, else the default one
// beside SKIFF_BIN. The kvm flavor has no OCI mode yet: the test checks that
// it is refused before anything is made, and stops there.
func ociStage1(t *testing.T, e *env) ocipod.Stage1 {
	t.Helper()
	s1 := ocipod.Stage1{Name: "default", Path: filepath.Join(filepath.Dir(e.bin), "stage1-default.oci.tar")}
	if p := os.Getenv("SKIFF_STAGE1"); p != "" {
		s1 = ocipod.Stage1{Name: e.flavor(), Path: p}
	}
	if e.flavor() == "kvm" {
		root := filepath.Join(t.TempDir(), "root")
		_, err := ocipod.Prepare(root, "kvm", ociBundle(t, e, "/bin/true"), s1)
		if !errors.Is(err, ocipod.ErrNoOCIMode) {
			t.Fatalf("prepare with the kvm stage1: %v, want ErrNoOCIMode", err)
		}
		if _, err := os.Stat(filepath.Join(root, "kvm")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused prepare left %s/kvm (%v)", root, err)
		}
		t.Skip("the kvm flavor has no OCI mode yet (it declares no oci-create); it is refused as it should be")
	}
	return s1
}

// waitInit reaps the container's init (this process is its subreaper) and
// returns its exit status.
func waitInit(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	done := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		done <- ws
	}()
	select {
	case ws := <-done:
		return ws
	case <-time.After(90 * time.Second):
		_ = unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("container init %d did not exit within 90 s", pid)
	}
	return 0
}

// checkGone asserts that nothing of container id is left: its directory,
// mounts under root and its cgroups.
func checkGone(t *testing.T, root, id string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s is still there (%v)", root, id, err)
	}
	if ms := mountsUnder(root); len(ms) > 0 {
		t.Errorf("mounts left under %s: %v", root, ms)
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/skiff-oci/" + id)
	if _, err := os.Stat("/sys/fs/cgroup/skiff-oci/" + id); err == nil {
		cgs = append(cgs, "/sys/fs/cgroup/skiff-oci/"+id)
	}
	if len(cgs) > 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
}

func ociState(t *testing.T, p *ocipod.Pod) specs.State {
	t.Helper()
	st, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// noSubreaper is the cleanup of a test that made this process a child
// subreaper (as containerd's shim is): the tests after it do not reap what
// would come to it, and an unreaped zombie of a pod's pid namespace keeps
// that pod from ending (the soak's gc found one after a killed enter).
func noSubreaper() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) }

// internal/ocipod runs a bundle as a pod of one app through the stage1's
// oci-create: create leaves it created (init in its own pid namespace,
// waiting), start runs the app with the caller's stdout, its exit code comes
// back as the init's, the app is PID 1 of its own pid view (exec sees it as
// /proc/1), SIGTERM stops it through its handler and is ignored without one
// (runc's rules), and delete leaves nothing behind.
func TestOCIPodLifecycle(t *testing.T) {
	e := newEnv(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(noSubreaper)
	root := filepath.Join(t.TempDir(), "root")
	s1 := ociStage1(t, e)

	// An app that writes and exits 7.
	bundle := ociBundle(t, e, "/bin/sh", "-c",
		"echo hello from $(hostname) nofile=$(ulimit -n) oom=$(cat /proc/self/oom_score_adj) fd=$(readlink /dev/fd); exit 7")
	setSpec(t, bundle, func(s *specs.Spec) {
		mode := os.FileMode(0o666)
		s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/test-null", Type: "c", Major: 1, Minor: 3, FileMode: &mode},
			{Path: "/dev/test-fifo", Type: "p", Major: 8, Minor: 666, FileMode: &mode}}
		s.Process.Args[2] = "[ -c /dev/test-null ] && [ -p /dev/test-fifo ] && echo > /dev/test-null && " + s.Process.Args[2]
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 512}}
		adj := 123
		s.Process.OOMScoreAdj = &adj
	})
	p, err := ocipod.Prepare(root, ociID("one"), bundle, s1)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(true) })
	if _, err := ocipod.Prepare(root, ociID("one"), bundle, s1); !errors.Is(err, ocipod.ErrExist) {
		t.Errorf("second prepare of one id: %v, want ErrExist", err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	pid, err := p.Create(ocipod.CreateOpts{Stdio: [3]*os.File{nil, w, w}, PidFile: filepath.Join(root, "one.pid")})
	w.Close()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if st := ociState(t, p); st.Status != specs.StateCreated || st.Pid != pid || st.Bundle != bundle {
		t.Fatalf("after create: state %+v, want created, pid %d, bundle %s", st, pid, bundle)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "one.pid")); strings.TrimSpace(string(b)) != itoa(pid) {
		t.Errorf("pid file holds %q, want %d", b, pid)
	}
	ours, _ := os.Readlink("/proc/self/ns/pid")
	if theirs, _ := os.Readlink("/proc/" + itoa(pid) + "/ns/pid"); theirs == ours || theirs == "" {
		t.Errorf("init %d is in pid namespace %q, want a new one", pid, theirs)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := p.Start(); !errors.Is(err, ocipod.ErrNotCreated) {
		t.Errorf("second start: %v, want ErrNotCreated", err)
	}
	out, _ := io.ReadAll(r)
	if !strings.Contains(string(out), "hello from") || !strings.Contains(string(out), "nofile=512 oom=123 fd=/proc/self/fd") {
		t.Errorf("app's stdout: %q, want hello from ... nofile=512 oom=123 fd=/proc/self/fd", out)
	}
	if ws := waitInit(t, pid); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Errorf("init ended with %v, want exit status 7", ws)
	}
	if st := ociState(t, p); st.Status != specs.StateStopped {
		t.Errorf("after the app ended: state %s, want stopped", st.Status)
	}
	if err := p.Delete(false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	checkGone(t, root, ociID("one"))
	if _, err := ocipod.Load(root, ociID("one")); !errors.Is(err, ocipod.ErrNotExist) {
		t.Errorf("load after delete: %v, want ErrNotExist", err)
	}

	// A long-running app: delete refuses it, SIGTERM stops it through its
	// handler. The app is PID 1 of its own pid view, as with runc: exec
	// sees it as /proc/1, and only a handler it set makes SIGTERM end it.
	bundle = ociBundle(t, e, "/bin/sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait")
	setSpec(t, bundle, func(s *specs.Spec) { // limits, as podman and containerd set them
		limit := int64(2048)
		s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	})
	p, err = ocipod.Prepare(root, ociID("two"), bundle, s1)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(true) })
	if pid, err = p.Create(ocipod.CreateOpts{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if st := ociState(t, p); st.Status != specs.StateRunning {
		t.Errorf("after start: state %s, want running", st.Status)
	}
	if err := p.Delete(false); !errors.Is(err, ocipod.ErrNotStopped) {
		t.Errorf("delete of a running container: %v, want ErrNotStopped", err)
	}
	app := waitOCIApp(t, pid, "sh")
	// exec runs a process spec in the app's pid view with its exit code;
	// --detach leaves it running and names it in the pid file.
	proc := &specs.Process{Args: []string{"/bin/sh", "-c", "echo exec in $(cat /proc/1/comm) as $(id -u); exit 3"},
		Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}, User: specs.User{UID: 1000, GID: 1000}}
	r, w, _ = os.Pipe()
	x, err := p.Exec(proc, ocipod.ExecOpts{Stdio: [3]*os.File{nil, w, w}})
	w.Close()
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	out, _ = io.ReadAll(r)
	r.Close()
	if xs, _ := x.Wait(); xs.ExitCode() != 3 || strings.TrimSpace(string(out)) != "exec in sh as 1000" {
		t.Errorf("exec: code %d, output %q; want 3 and \"exec in sh as 1000\" (the app is /proc/1)", xs.ExitCode(), out)
	}
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	proc.Args = []string{"/bin/sleep", "1000"}
	if _, err := p.Exec(proc, ocipod.ExecOpts{Detach: true, PidFile: pidFile}); err != nil {
		t.Fatalf("exec --detach: %v", err)
	}
	b, _ := os.ReadFile(pidFile)
	// Once enter has exited this process (a subreaper, like containerd's
	// shim) is the detached process's parent and must reap it, or the
	// container's pid namespace cannot end.
	if xpid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		go func() { _, _ = unix.Wait4(xpid, nil, 0, nil) }()
	}
	// It names app-exec, in the container's pid namespace (what a
	// subreaper reaps), which supervises the process in the app's.
	ns, _ := os.Readlink("/proc/" + strings.TrimSpace(string(b)) + "/ns/pid")
	if initNS, _ := os.Readlink("/proc/" + itoa(pid) + "/ns/pid"); ns != initNS {
		t.Errorf("detached exec: pid file %q names a process in pid namespace %q, want the container's %q", b, ns, initNS)
	}
	appNS, _ := os.Readlink("/proc/" + itoa(app) + "/ns/pid")
	xpid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, 60*time.Second, "the detached exec's process in the app's pid namespace", func() bool {
		for _, c := range childrenOf(xpid) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c))
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c)); ns == appNS && strings.TrimSpace(string(comm)) == "sleep" {
				return true
			}
		}
		return false
	})
	if err := p.Signal(unix.SIGTERM, false); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	ws := waitInit(t, pid)
	code, ok := p.ExitCode()
	t.Logf("init after SIGTERM: %v; app exit %d %v", ws, code, ok)
	if !ws.Exited() || ws.ExitStatus() != 128+int(unix.SIGTERM) || !ok || code != 128+int(unix.SIGTERM) {
		t.Errorf("after SIGTERM: init ended with %v, app's record %d (%v); want both 143, the app's status", ws, code, ok)
	}
	if err := p.Delete(false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	checkGone(t, root, ociID("two"))

	// An app with no SIGTERM handler ignores SIGTERM, as PID 1 of its pid
	// namespace does under runc; SIGKILL ends the container at once; a
	// stopped container deletes without force. A created one that never
	// started deletes with force.
	bundle = ociBundle(t, e, "/bin/sleep", "1000")
	p, err = ocipod.Prepare(root, ociID("three"), bundle, s1)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(true) })
	if pid, err = p.Create(ocipod.CreateOpts{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	app = waitOCIApp(t, pid, "sleep")
	if err := p.Signal(unix.SIGTERM, false); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// The signal went through app-exec, which forwards it: an exec's
	// round trip later, the app is still there.
	proc = &specs.Process{Args: []string{"/bin/cat", "/proc/1/comm"}, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}}
	r, w, _ = os.Pipe()
	x, err = p.Exec(proc, ocipod.ExecOpts{Stdio: [3]*os.File{nil, w, w}})
	w.Close()
	if err != nil {
		t.Fatalf("exec after SIGTERM: %v (want the app running: a PID 1 without a handler ignores SIGTERM)", err)
	}
	out, _ = io.ReadAll(r)
	r.Close()
	if xs, _ := x.Wait(); xs.ExitCode() != 0 || strings.TrimSpace(string(out)) != "sleep" {
		t.Errorf("exec after SIGTERM: code %d, output %q; want 0 and \"sleep\"", xs.ExitCode(), out)
	}
	if st := ociState(t, p); st.Status != specs.StateRunning || exiting(app) {
		t.Errorf("after SIGTERM to an app without a handler: state %s, app %d alive %v; want it running, as runc's", st.Status, app, !exiting(app))
	}
	if err := p.Signal(unix.SIGKILL, false); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	if ws := waitInit(t, pid); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("after SIGKILL: init ended with %v", ws)
	}
	if err := p.Signal(unix.SIGTERM, false); !errors.Is(err, ocipod.ErrNotRunning) {
		t.Errorf("signal to a stopped container: %v, want ErrNotRunning", err)
	}
	if err := p.Delete(false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	checkGone(t, root, ociID("three"))
	p, err = ocipod.Prepare(root, ociID("four"), bundle, s1)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(true) })
	if pid, err = p.Create(ocipod.CreateOpts{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	go func() { _, _ = unix.Wait4(pid, nil, 0, nil) }()
	if err := p.Delete(false); !errors.Is(err, ocipod.ErrNotStopped) {
		t.Errorf("delete of a created container: %v, want ErrNotStopped", err)
	}
	if err := p.Delete(true); err != nil {
		t.Fatalf("delete --force: %v", err)
	}
	checkGone(t, root, ociID("four"))
	if ids, err := ocipod.List(root); err != nil || len(ids) != 0 {
		t.Errorf("list after all deletes: %v, %v", ids, err)
	}
}

// waitOCIApp waits until the app, named comm, runs: the child of app-exec
// (the init's child), which supervises it in a pid namespace of its own (or,
// in the init's, the init's child).
func waitOCIApp(t *testing.T, pid int, comm string) int {
	t.Helper()
	app := 0
	waitFor(t, 60*time.Second, "the app to run", func() bool {
		// Not task/PID/children: app-exec is multi-threaded, and that
		// lists the children of one thread.
		for _, q := range childrenOf(pid) {
			for _, c := range append([]int{q}, childrenOf(q)...) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(b)) == comm {
					app = c
					return true
				}
			}
		}
		return false
	})
	return app
}

// childrenOf lists pid's children, whichever of its threads started them.
func childrenOf(pid int) []int {
	var out []int
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		if q, err := strconv.Atoi(e.Name()); err == nil && ppidOf(q) == pid {
			out = append(out, q)
		}
	}
	return out
}

// setSpec edits a bundle's config.json.
func setSpec(t *testing.T, bundle string, edit func(*specs.Spec)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	edit(&spec)
	raw, _ = json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ociRun prepares, creates and starts a container; the caller deletes it.
func ociRun(t *testing.T, root, id, bundle string, s1 ocipod.Stage1, o ocipod.CreateOpts) (*ocipod.Pod, int) {
	t.Helper()
	p, err := ocipod.Prepare(root, id, bundle, s1)
	if err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	t.Cleanup(func() { _ = p.Delete(true) })
	pid, err := p.Create(o)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	go func() { _, _ = unix.Wait4(pid, nil, 0, nil) }() // we are its subreaper
	if err := p.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return p, pid
}

// A container joins another's namespaces by path (as a Kubernetes pod's
// containers join the sandbox's), gets the cgroup its cgroupsPath names and
// the sysctls it asks for, and with process.terminal its app's stdio is a pty
// whose master comes back over --console-socket.
func TestOCIPodJoinsNamespacesCgroupsPathSysctlsAndTerminal(t *testing.T) {
	e := newEnv(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(noSubreaper)
	root := filepath.Join(t.TempDir(), "root")
	s1 := ociStage1(t, e)
	cgParent := "skiff-oci-test-" + itoa(os.Getpid())
	t.Cleanup(func() {
		ds, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgParent)
		ds = append(ds, "/sys/fs/cgroup/"+cgParent)
		for _, d := range ds {
			_ = os.Remove(d)
		}
	})

	a := ociBundle(t, e, "/bin/sleep", "1000")
	setSpec(t, a, func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"kernel.msgmax": "12345"}
		s.Linux.CgroupsPath = "/" + cgParent + "/sandbox"
	})
	pa, pidA := ociRun(t, root, ociID("sandbox"), a, s1, ocipod.CreateOpts{})
	if cg, _ := os.ReadFile("/proc/" + itoa(pidA) + "/cgroup"); !strings.Contains(string(cg), "/"+cgParent+"/sandbox") {
		t.Errorf("init's cgroups:\n%s\nwant /%s/sandbox", cg, cgParent)
	}
	out := &syncBuffer{}
	x, err := pa.Exec(&specs.Process{Args: []string{"/bin/cat", "/proc/sys/kernel/msgmax"}, Cwd: "/"},
		ocipod.ExecOpts{Stdio: [3]*os.File{nil, pipeTo(t, out), nil}})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	_, _ = x.Wait()
	waitFor(t, 10*time.Second, "exec output", func() bool { return strings.TrimSpace(out.String()) == "12345" })

	b := ociBundle(t, e, "/bin/sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty $(tty)")
	setSpec(t, b, func(s *specs.Spec) {
		s.Process.Terminal = true
		for i, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
				s.Linux.Namespaces[i].Path = "/proc/" + itoa(pidA) + "/ns/" + map[specs.LinuxNamespaceType]string{
					specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[n.Type]
			}
		}
	})
	sock, master := consoleReceiver(t)
	_, pidB := ociRun(t, root, ociID("member"), b, s1, ocipod.CreateOpts{ConsoleSocket: sock})
	for _, ns := range []string{"net", "ipc", "uts"} {
		want, _ := os.Readlink("/proc/" + itoa(pidA) + "/ns/" + ns)
		if got, _ := os.Readlink("/proc/" + itoa(pidB) + "/ns/" + ns); got != want || got == "" {
			t.Errorf("%s namespace: member's %q, sandbox's %q; want the same", ns, got, want)
		}
	}
	if pidns, _ := os.Readlink("/proc/" + itoa(pidB) + "/ns/pid"); pidns == "" {
		t.Error("member has no pid namespace")
	}
	if text := readPty(t, master); !strings.Contains(text, "on-a-tty /dev/pts/") {
		t.Errorf("terminal app printed %q, want on-a-tty /dev/pts/N", text)
	}

	// exec with a terminal: its pty master comes over the console socket.
	sock, master = consoleReceiver(t)
	x, err = pa.Exec(&specs.Process{Args: []string{"/bin/sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo exec-on-a-tty $(tty)"}, Cwd: "/", Terminal: true},
		ocipod.ExecOpts{ConsoleSocket: sock})
	if err != nil {
		t.Fatalf("exec with a terminal: %v", err)
	}
	if text := readPty(t, master); !strings.Contains(text, "exec-on-a-tty /dev/pts/") {
		t.Errorf("terminal exec printed %q, want exec-on-a-tty /dev/pts/N", text)
	}
	if xs, _ := x.Wait(); xs.ExitCode() != 0 {
		t.Errorf("terminal exec: exit code %d", xs.ExitCode())
	}
}

// consoleReceiver listens on a console socket and hands on the first pty
// master sent there (nil when none came).
func consoleReceiver(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	master := make(chan *os.File, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			master <- nil
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			master <- nil
			return
		}
		fds, _ := unix.ParseUnixRights(&msgs[0])
		master <- os.NewFile(uintptr(fds[0]), "pty master")
	}()
	return sock, master
}

// readPty reads what comes out of the pty until its other side closes.
func readPty(t *testing.T, master <-chan *os.File) string {
	t.Helper()
	var m *os.File
	select {
	case m = <-master:
	case <-time.After(60 * time.Second):
	}
	if m == nil {
		t.Fatal("no pty master came over the console socket")
	}
	defer m.Close()
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(io.LimitReader(m, 200)); got <- string(b) }()
	select {
	case text := <-got:
		return text
	case <-time.After(60 * time.Second):
		return ""
	}
}

// pipeTo returns the write end of a pipe whose output goes to b.
func pipeTo(t *testing.T, b *syncBuffer) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			_, _ = b.Write(buf[:n])
			if err != nil {
				r.Close()
				return
			}
		}
	}()
	t.Cleanup(func() { w.Close() })
	return w
}

// ociCreateProc finds the stage1 oci-create process of container id.
func ociCreateProc(id string) int {
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[0], "oci-create") && args[len(args)-1] == id {
			pid, _ := strconv.Atoi(d.Name())
			return pid
		}
	}
	return 0
}

// A SIGKILL of stage1's oci-create at any point of create, then delete
// --force, leaves nothing: no directory, mount, cgroup or process.
func TestOCIPodKilledCreateLeavesNothing(t *testing.T) {
	e := newEnv(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(noSubreaper)
	root := filepath.Join(t.TempDir(), "root")
	s1 := ociStage1(t, e)
	bundle := ociBundle(t, e, "/bin/sleep", "1000")
	for i, delay := range []time.Duration{0, 10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond} {
		id := ociID("k" + itoa(i))
		p, err := ocipod.Prepare(root, id, bundle, s1)
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		created := make(chan error, 1)
		go func() { _, err := p.Create(ocipod.CreateOpts{}); created <- err }()
		var pid int
		waitFor(t, 60*time.Second, "oci-create to run", func() bool {
			pid = ociCreateProc(id)
			return pid != 0
		})
		// oci-create may already have written its marker (and be about to
		// return): created is right then too.
		if st := ociState(t, p); st.Status != specs.StateCreating && st.Status != specs.StateCreated {
			t.Errorf("%s: state during create: %s, want creating (or created)", id, st.Status)
		}
		time.Sleep(delay)
		_ = unix.Kill(pid, unix.SIGKILL)
		err = <-created
		t.Logf("%s: killed after %v: create: %v", id, delay, err)
		if err := p.Delete(true); err != nil {
			t.Errorf("%s: delete --force: %v", id, err)
		}
		// Orphans of the killed create (a waiting init) came to us: reap them.
		for {
			if pid, _ := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		checkGone(t, root, id)
	}
}

// ociID makes a container id unique on the host (cgroup paths are
// host-wide): name-PID.
func ociID(name string) string { return name + "-" + itoa(os.Getpid()) }
