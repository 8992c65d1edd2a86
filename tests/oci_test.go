//go:build functional

package tests

// skiff-oci, runc's command line (issue #14), driven as podman, containerd's
// shim and runtime-tools drive it. The runtime under test is
// SKIFF_OCI_RUNTIME if set (point it at runc to check the expected codes
// against runc's), else skiff-oci beside SKIFF_BIN.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type ociEnv struct {
	t      *testing.T
	bin    string
	root   string // --root
	dir    string // bundles, logs
	cgroup string // cgroupsPath parent of this test's containers
	isRunc bool
}

func newOCIEnv(t *testing.T) *ociEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("functional tests need root")
	}
	need(t, "umoci", "tar")
	bin := os.Getenv("SKIFF_OCI_RUNTIME")
	if bin == "" {
		if os.Getenv("SKIFF_BIN") == "" || os.Getenv("SKIFF_TEST_IMAGES") == "" {
			t.Skip("SKIFF_BIN and SKIFF_TEST_IMAGES are not set; run the functional tests with `make test`")
		}
		bin = filepath.Join(filepath.Dir(os.Getenv("SKIFF_BIN")), "skiff-oci")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no OCI runtime at %s (make all builds bin/skiff-oci)", bin)
	}
	d := t.TempDir()
	o := &ociEnv{t: t, bin: bin, root: filepath.Join(d, "root"), dir: d,
		cgroup: fmt.Sprintf("skiff-oci-test-%d", time.Now().UnixNano()), isRunc: filepath.Base(bin) != "skiff-oci"}
	t.Cleanup(o.cleanup)
	return o
}

// cleanup kills and deletes whatever a failed test left, then removes the
// cgroup parents (runc leaves them; so may a failure).
func (o *ociEnv) cleanup() {
	if ids, err := os.ReadDir(o.root); err == nil {
		for _, e := range ids {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				exec.Command(o.bin, "--root", o.root, "delete", "--force", e.Name()).Run()
			}
		}
	}
	for _, m := range mountsUnder(o.dir) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + o.cgroup)
	if _, err := os.Stat("/sys/fs/cgroup/" + o.cgroup); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup/"+o.cgroup)
	}
	for _, d := range dirs {
		leaves, _ := filepath.Glob(d + "/*")
		for _, l := range leaves {
			os.Remove(l) // only empty cgroup directories go
		}
		os.Remove(d)
	}
}

// bundle unpacks the busybox test image into a bundle whose process is
// argv, without a terminal, in the cgroup o.cgroup/ID (set at create).
func (o *ociEnv) bundle(name string, argv ...string) string {
	o.t.Helper()
	images := os.Getenv("SKIFF_TEST_IMAGES")
	if images == "" {
		o.t.Skip("SKIFF_TEST_IMAGES is not set")
	}
	b := filepath.Join(o.dir, name)
	sh(o.t, o.dir, fmt.Sprintf("mkdir -p L-%s && tar -xf %s/busybox.oci.tar -C L-%s && umoci unpack --image L-%s:latest %s >/dev/null && rm -rf L-%s",
		name, images, name, name, b, name))
	o.editConfig(b, func(c map[string]any) {
		p := c["process"].(map[string]any)
		p["args"] = argv
		p["terminal"] = false
	})
	return b
}

func (o *ociEnv) editConfig(bundle string, edit func(map[string]any)) {
	o.t.Helper()
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		o.t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		o.t.Fatal(err)
	}
	edit(c)
	if b, err = json.Marshal(c); err != nil {
		o.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		o.t.Fatal(err)
	}
}

// forID puts the container's cgroup at o.cgroup/ID.
func (o *ociEnv) forID(bundle, id string) {
	o.editConfig(bundle, func(c map[string]any) {
		c["linux"].(map[string]any)["cgroupsPath"] = "/" + o.cgroup + "/" + id
	})
}

// rt runs the runtime with --root; its stdio are files (a container init
// that inherits them must not keep the test waiting on a pipe).
func (o *ociEnv) rt(args ...string) result {
	o.t.Helper()
	out, err := os.CreateTemp(o.dir, "out")
	if err != nil {
		o.t.Fatal(err)
	}
	errf, err := os.CreateTemp(o.dir, "err")
	if err != nil {
		o.t.Fatal(err)
	}
	defer out.Close()
	defer errf.Close()
	c := exec.Command(o.bin, append([]string{"--root", o.root}, args...)...)
	c.Stdout, c.Stderr = out, errf
	err = c.Run()
	r := result{}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		o.t.Fatalf("%s %q: %v", o.bin, args, err)
	}
	bo, _ := os.ReadFile(out.Name())
	be, _ := os.ReadFile(errf.Name())
	r.stdout, r.stderr = string(bo), string(be)
	return r
}

func (o *ociEnv) ok(args ...string) result {
	o.t.Helper()
	r := o.rt(args...)
	if r.code != 0 {
		o.t.Fatalf("%q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks that the runtime exits 1 (runc's code for every error) with
// an error that contains want (when skiff-oci: on one line).
func (o *ociEnv) fails(want string, args ...string) {
	o.t.Helper()
	r := o.rt(args...)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		o.t.Fatalf("%q: exit %d, stderr %q; want exit 1 and %q", args, r.code, r.stderr, want)
	}
	if !o.isRunc && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		o.t.Errorf("%q: error of more than one line: %q", args, r.stderr)
	}
}

type rtState struct {
	ID, Status, Bundle string
	Pid                int
}

func (o *ociEnv) state(id string) rtState {
	o.t.Helper()
	var s rtState
	r := o.ok("state", id)
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		o.t.Fatalf("state %s: %v: %q", id, err, r.stdout)
	}
	return s
}

func (o *ociEnv) waitStatus(id, want string) {
	o.t.Helper()
	waitFor(o.t, 60*time.Second, id+" "+want, func() bool { return o.state(id).Status == want })
}

// nothingLeft checks that container id left no trace: no state directory
// (nor skiff-oci's lock file), no mount under --root or the bundles, no
// cgroup, no process.
func (o *ociEnv) nothingLeft(id string, pids ...int) {
	o.t.Helper()
	if _, err := os.Stat(filepath.Join(o.root, id)); !os.IsNotExist(err) {
		o.t.Errorf("%s: state directory left under --root (%v)", id, err)
	}
	if !o.isRunc {
		for _, f := range []string{".locks/" + id + ".lock", ".hooks/" + id + ".json"} {
			if _, err := os.Stat(filepath.Join(o.root, f)); !os.IsNotExist(err) {
				o.t.Errorf("%s: %s left under --root", id, f)
			}
		}
	}
	if ms := mountsUnder(o.dir); len(ms) != 0 {
		o.t.Errorf("%s: mounts left: %v", id, ms)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + o.cgroup + "/" + id)
	if len(dirs) != 0 {
		o.t.Errorf("%s: cgroups left: %v", id, dirs)
	}
	for _, pid := range pids {
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !bytes.Contains(b, []byte(") Z ")) {
				o.t.Errorf("%s: process %d still runs", id, pid)
			}
		}
	}
}

// Bad input: runc's exit code (1) and wording, one clear error, nothing left.
func TestOCIBadInput(t *testing.T) {
	o := newOCIEnv(t)
	// Unknown ids.
	o.fails("does not exist", "state", "nope")
	o.fails("does not exist", "start", "nope")
	o.fails("does not exist", "kill", "nope", "KILL")
	o.fails("does not exist", "delete", "nope")
	o.ok("delete", "--force", "nope")
	// A missing bundle, a bundle without config.json, a malformed one.
	o.fails("no such file or directory", "create", "--bundle", filepath.Join(o.dir, "missing"), "b1")
	o.nothingLeft("b1")
	empty := filepath.Join(o.dir, "empty")
	os.Mkdir(empty, 0o755)
	o.fails("config.json", "create", "--bundle", empty, "b2")
	o.nothingLeft("b2")
	bad := o.bundle("bad", "/bin/true")
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": `), 0o644)
	r := o.rt("create", "--bundle", bad, "b3")
	if r.code != 1 || r.stderr == "" {
		t.Errorf("create with a malformed config.json: exit %d, %q", r.code, r.stderr)
	}
	o.nothingLeft("b3")
	o.fails("does not exist", "state", "b3")

	if !o.isRunc { // a stage1 flavor that is not there: said so, nothing made
		ns := o.bundle("ns", "/bin/true")
		o.editConfig(ns, func(c map[string]any) {
			c["annotations"] = map[string]any{"dev.skiff.oci.stage1": "nosuch"}
		})
		o.fails("nosuch", "create", "--bundle", ns, "b4")
		o.nothingLeft("b4")
	}

	// Second create of one id, start twice, delete of a running container.
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "c1")
	o.ok("create", "--bundle", b, "c1")
	pid := o.state("c1").Pid
	o.fails("exists", "create", "--bundle", b, "c1")
	if s := o.state("c1"); s.Status != "created" || s.Pid != pid {
		t.Errorf("the failed second create changed c1: %+v (pid was %d)", s, pid)
	}
	o.ok("start", "c1")
	o.waitStatus("c1", "running")
	o.fails("cannot start an already running container", "start", "c1")
	o.fails("is not stopped", "delete", "c1")
	if s := o.state("c1"); s.Status != "running" {
		t.Errorf("after a refused delete, c1 is %s", s.Status)
	}
	o.ok("delete", "--force", "c1")
	o.fails("does not exist", "state", "c1")
	o.nothingLeft("c1", pid)
}

// The lifecycle runtime-tools and the shims drive: create (init waits, its
// pid in --pid-file), start, state, kill (SIGTERM: a clean stop), delete;
// run gives the app's exit status.
func TestOCILifecycle(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "echo started > /tmp/started; trap 'exit 0' TERM; sleep 1000 & wait")
	o.forID(b, "l1")
	// The runtime namespace's hooks get the state on stdin.
	hook := func(name string) map[string]any {
		return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "cat > " + filepath.Join(o.dir, name+".hook")}}
	}
	o.editConfig(b, func(c map[string]any) {
		c["hooks"] = map[string]any{"prestart": []any{hook("prestart")}, "createRuntime": []any{hook("createRuntime")},
			"poststart": []any{hook("poststart")}, "poststop": []any{hook("poststop")}}
	})
	hookRan := func(name string) {
		t.Helper()
		var st rtState
		raw, err := os.ReadFile(filepath.Join(o.dir, name+".hook"))
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err != nil || st.ID != "l1" || st.Bundle != b {
			t.Errorf("%s hook: state %q on stdin (%v)", name, raw, err)
		}
	}
	pidFile := filepath.Join(o.dir, "l1.pid")
	o.ok("create", "--bundle", b, "--pid-file", pidFile, "l1")
	s := o.state("l1")
	raw, err := os.ReadFile(pidFile)
	if err != nil || strconv.Itoa(s.Pid) != strings.TrimSpace(string(raw)) || s.Status != "created" || s.ID != "l1" || s.Bundle != b {
		t.Fatalf("after create: state %+v, pid file %q (%v)", s, raw, err)
	}
	if _, err := os.Stat(filepath.Join(b, "rootfs/tmp/started")); err == nil {
		t.Fatal("the app ran before start")
	}
	hookRan("prestart")
	hookRan("createRuntime")
	// The pid is in the container's namespaces (containerd opens its ns).
	for _, ns := range []string{"pid", "mnt", "net"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", s.Pid, ns))
		if err != nil || its == mine {
			t.Errorf("init %d's %s namespace is %q (%v), the host's is %q", s.Pid, ns, its, err, mine)
		}
	}
	o.ok("start", "l1")
	hookRan("poststart")
	o.waitStatus("l1", "running")
	waitFor(t, 60*time.Second, "the app to run", func() bool {
		_, err := os.Stat(filepath.Join(b, "rootfs/tmp/started"))
		return err == nil
	})
	if l := o.ok("list", "-q").stdout; l != "l1\n" {
		t.Errorf("list -q: %q", l)
	}
	o.ok("kill", "l1", "TERM")
	o.waitStatus("l1", "stopped")
	o.fails("container not running", "kill", "l1", "KILL")
	o.ok("delete", "l1")
	hookRan("poststop")
	o.nothingLeft("l1", s.Pid)

	// run: the app's exit status, its output on the caller's stdout.
	b2 := o.bundle("b2", "/bin/sh", "-c", "echo hello from the app; exit 3")
	o.forID(b2, "r1")
	r := o.rt("run", "--bundle", b2, "r1")
	if r.code != 3 || !strings.Contains(r.stdout, "hello from the app") {
		t.Errorf("run: exit %d, stdout %q, stderr %q; want 3 and the app's line", r.code, r.stdout, r.stderr)
	}
	o.nothingLeft("r1")
}

// kill -9 of the runtime during create (as soon as its state directory
// exists, and once the stage1 works in it), then delete --force: nothing
// left, and the id is free again.
func TestOCIKilledCreateThenDeleteForce(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	for _, at := range []string{"", "stage1"} {
		id := "k1" + at
		o.forID(b, id)
		c := exec.Command(o.bin, "--root", o.root, "create", "--bundle", b, id)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		waitFor(t, 60*time.Second, "create to reach "+filepath.Join(id, at), func() bool {
			select {
			case <-done:
				return true
			default:
			}
			_, err := os.Stat(filepath.Join(o.root, id, at))
			return err == nil
		})
		c.Process.Signal(syscall.SIGKILL)
		<-done
		var pid int
		if raw, err := os.ReadFile(filepath.Join(o.root, id, "pid")); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
		o.ok("delete", "--force", id)
		o.nothingLeft(id, pid)
		o.fails("does not exist", "state", id)
		// The id is free again.
		o.ok("create", "--bundle", b, id)
		o.ok("delete", "--force", id)
		o.nothingLeft(id)
	}
}

// kill -9 of delete --force once it has killed the init (while the stage1's
// gc runs), then delete --force again: nothing left.
func TestOCIKilledDeleteThenDeleteForce(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "d1")
	o.ok("create", "--bundle", b, "d1")
	o.ok("start", "d1")
	o.waitStatus("d1", "running")
	pid := o.state("d1").Pid
	c := exec.Command(o.bin, "--root", o.root, "delete", "--force", "d1")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	waitFor(t, 60*time.Second, "delete to kill the init", func() bool {
		select {
		case <-done:
			return true
		default:
		}
		return syscall.Kill(pid, 0) != nil
	})
	c.Process.Signal(syscall.SIGKILL)
	<-done
	r := o.rt("delete", "--force", "d1")
	if r.code != 0 {
		t.Errorf("delete --force after a killed delete: exit %d, %q", r.code, r.stderr)
	}
	o.nothingLeft("d1", pid)
}

// pause/resume (the freezer), ps, update --resources on a running container.
func TestOCIPauseResumePsUpdate(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "p1")
	o.ok("create", "--bundle", b, "p1")
	o.ok("start", "p1")
	o.waitStatus("p1", "running")
	pid := o.state("p1").Pid
	// running is start's effect; the app's process comes a moment later.
	waitFor(t, 60*time.Second, "the app in ps", func() bool { return strings.Contains(o.ok("ps", "p1").stdout, "sleep 1000") })
	var pids []int
	if err := json.Unmarshal([]byte(o.ok("ps", "--format", "json", "p1").stdout), &pids); err != nil || len(pids) == 0 {
		t.Errorf("ps --format json: %v %v", pids, err)
	}
	found := false
	for _, p := range pids {
		found = found || p == pid
	}
	if !found {
		t.Errorf("ps --format json %v lacks the init %d", pids, pid)
	}
	if out := o.ok("ps", "p1").stdout; !strings.Contains(out, "PID") || !strings.Contains(out, "sleep 1000") {
		t.Errorf("ps: %q", out)
	}
	o.ok("pause", "p1")
	if s := o.state("p1"); s.Status != "paused" {
		t.Errorf("after pause: %s", s.Status)
	}
	o.ok("resume", "p1")
	if s := o.state("p1"); s.Status != "running" {
		t.Errorf("after resume: %s", s.Status)
	}
	res := filepath.Join(o.dir, "res.json")
	os.WriteFile(res, []byte(`{"pids": {"limit": 77}, "memory": {"limit": 67108864}}`), 0o644)
	o.ok("update", "--resources", res, "p1")
	for file, want := range map[string]string{"pids/" + o.cgroup + "/p1/pids.max": "77",
		"memory/" + o.cgroup + "/p1/memory.limit_in_bytes": "67108864"} {
		if _, err := os.Stat("/sys/fs/cgroup/" + filepath.Dir(file)); err != nil {
			continue // not a v1 hierarchy here
		}
		if got, err := os.ReadFile("/sys/fs/cgroup/" + file); err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("after update, %s = %q (%v); want %s", file, got, err, want)
		}
	}
	o.ok("delete", "--force", "p1")
	o.nothingLeft("p1", pid)
}

// Hooks run as root on the host: a pod that rewrites the config in its pod
// directory (apps/ is writable from inside) gets no hook of its own run.
func TestOCIHooksAreNotReadFromThePodDirectory(t *testing.T) {
	o := newOCIEnv(t)
	if o.isRunc {
		t.Skip("skiff-oci's pod directory")
	}
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "h1")
	o.ok("create", "--bundle", b, "h1")
	marker := filepath.Join(o.dir, "injected")
	cfg := filepath.Join(o.root, "h1", "apps", "app", "config.json")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	evil := []any{map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "touch " + marker}}}
	c["hooks"] = map[string]any{"poststart": evil, "poststop": evil}
	raw, _ = json.Marshal(c)
	if err := os.WriteFile(cfg, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	o.ok("start", "h1")
	o.ok("delete", "--force", "h1")
	if _, err := os.Stat(marker); err == nil {
		t.Error("a hook written into the pod directory ran on the host")
	}
	o.nothingLeft("h1")
}

// exec: plain args, the process's exit code and output; exec in a stopped
// container refused.
func TestOCIExec(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "e1")
	o.ok("create", "--bundle", b, "e1")
	o.ok("start", "e1")
	o.waitStatus("e1", "running")
	r := o.rt("exec", "e1", "/bin/sh", "-c", "echo in-the-container; exit 3")
	if r.code != 3 || !strings.Contains(r.stdout, "in-the-container") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 3 and the line", r.code, r.stdout, r.stderr)
	}
	proc := filepath.Join(o.dir, "process.json")
	os.WriteFile(proc, []byte(`{"args": ["/bin/sh", "-c", "echo via-process; exit 4"], "cwd": "/",
		"env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}`), 0o644)
	r = o.rt("exec", "--process", proc, "e1")
	if r.code != 4 || !strings.Contains(r.stdout, "via-process") {
		t.Errorf("exec --process: exit %d, stdout %q, stderr %q; want 4 and the line", r.code, r.stdout, r.stderr)
	}
	o.ok("kill", "e1", "KILL")
	o.waitStatus("e1", "stopped")
	// runc: exit 255, "cannot exec in a stopped container"; skiff-oci: exit 1.
	if r := o.rt("exec", "e1", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "stopped") {
		t.Errorf("exec in a stopped container: exit %d, %q", r.code, r.stderr)
	}
	o.ok("delete", "e1")
	o.nothingLeft("e1")
}

// exec --process F --detach --pid-file P, as containerd's shim and podman
// send it: the pid is the process's, in the container's namespaces.
func TestOCIExecDetached(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "e2")
	o.ok("create", "--bundle", b, "e2")
	o.ok("start", "e2")
	o.waitStatus("e2", "running")
	proc := filepath.Join(o.dir, "process.json")
	os.WriteFile(proc, []byte(`{"args": ["/bin/sh", "-c", "echo detached > /tmp/exec-ran; sleep 1000"], "cwd": "/",
		"env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}`), 0o644)
	pidFile := filepath.Join(o.dir, "exec.pid")
	o.ok("exec", "--process", proc, "--detach", "--pid-file", pidFile, "e2")
	raw, err := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		t.Fatalf("exec --pid-file: %q, %v", raw, err)
	}
	waitFor(t, 60*time.Second, "the detached exec to run", func() bool {
		_, err := os.Stat(filepath.Join(b, "rootfs/tmp/exec-ran"))
		return err == nil
	})
	mine, _ := os.Readlink("/proc/self/ns/mnt")
	if its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && its == mine {
		t.Errorf("exec'd process %d is in the host's mount namespace", pid)
	}
	o.ok("delete", "--force", "e2")
	o.nothingLeft("e2", pid)
}

// The bundle's spec as runtime-spec's default writes it (issue #14,
// runtime-tools' default config): root's ambient capabilities raised, and
// /sys mounted where the config lists it (after /dev/mqueue), not first.
func TestOCIAmbientCapsAndSysMountOrder(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "grep CapAmb /proc/self/status; cat /proc/self/mountinfo")
	o.forID(b, "amb")
	o.editConfig(b, func(c map[string]any) {
		caps := []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"}
		c["process"].(map[string]any)["user"] = map[string]any{"uid": 0, "gid": 0}
		// CAP_NET_RAW is not inheritable: the kernel cannot raise it, and
		// it is left out (no warning on the app's stderr).
		more := append([]string{"CAP_NET_RAW"}, caps...)
		c["process"].(map[string]any)["capabilities"] = map[string]any{"bounding": more, "effective": more,
			"permitted": more, "inheritable": caps, "ambient": []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"}}
		nse := []string{"nosuid", "noexec", "nodev"}
		c["mounts"] = []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": append(nse, "mode=1777", "size=65536k")},
			{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nse},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": append(nse, "ro")},
		}
	})
	r := o.ok("run", "--bundle", b, "amb")
	// CAP_CHOWN is bit 0, CAP_KILL bit 5.
	if !strings.Contains(r.stdout, "CapAmb:\t0000000000000021") {
		t.Errorf("ambient capabilities CAP_CHOWN and CAP_KILL not raised:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "ambient") {
		t.Errorf("stderr: %s", r.stderr)
	}
	var order []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == "/sys" || f[4] == "/dev/mqueue") {
			order = append(order, f[4])
		}
	}
	if strings.Join(order, " ") != "/dev/mqueue /sys" {
		t.Errorf("mount order %v, want /dev/mqueue then /sys (the config's):\n%s", order, r.stdout)
	}
	o.rt("delete", "--force", "amb")
	o.nothingLeft("amb")
}

// Masked and read-only paths in the bundle's rootfs (not only in /proc and
// /sys) are masked and read-only, as runc makes them (ociMaskedAndReadonlyPaths).
func TestOCIMaskedAndReadonlyPathsInTheRootfs(t *testing.T) {
	ociMaskedAndReadonlyPaths(t, newOCIEnv(t))
}

// A small RLIMIT_AS (runtime-tools' process_rlimits asks for 1 GiB) is the
// app's, and does not keep app-exec, whose own address space is larger,
// from building the bundle's seccomp filter first.
func TestOCIRlimitASWithSeccomp(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "echo as=$(ulimit -v) nofile=$(ulimit -n)")
	o.forID(b, "rl")
	o.editConfig(b, func(c map[string]any) {
		c["process"].(map[string]any)["rlimits"] = []map[string]any{
			{"type": "RLIMIT_AS", "soft": 1 << 30, "hard": 2 << 30},
			{"type": "RLIMIT_NOFILE", "soft": 3000, "hard": 4000},
		}
		c["linux"].(map[string]any)["seccomp"] = map[string]any{"defaultAction": "SCMP_ACT_ALLOW",
			"architectures": []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
			"syscalls":      []map[string]any{{"names": []string{"getegid", "acct", "kexec_load"}, "action": "SCMP_ACT_ERRNO"}}}
	})
	r := o.rt("run", "--bundle", b, "rl")
	if r.code != 0 || !strings.Contains(r.stdout, "as=1048576 nofile=3000") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and as=1048576 nofile=3000", r.code, r.stdout, r.stderr)
	}
	o.rt("delete", "--force", "rl")
	o.nothingLeft("rl")
}

// An rlimit the kernel does not have fails create (runtime-spec: the
// runtime MUST generate an error), not the app after start.
func TestOCIUnknownRlimitFailsCreate(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/true")
	o.forID(b, "rlx")
	o.editConfig(b, func(c map[string]any) {
		c["process"].(map[string]any)["rlimits"] = []map[string]any{{"type": "RLIMIT_TEST", "soft": 1024, "hard": 1024}}
	})
	o.fails("RLIMIT_TEST", "create", "--bundle", b, "rlx")
	o.rt("delete", "--force", "rlx")
	o.nothingLeft("rlx")
}

// Why the stage1 refused a container reaches the caller in skiff-oci's one
// error line and its --log (containerd and podman show only those), not only
// the container's stderr.
func TestOCICreateErrorNamesTheStage1sCause(t *testing.T) {
	o := newOCIEnv(t)
	if o.isRunc {
		t.Skip("runc joins the mount namespace; the refusal is skiff's (systemd is the init)")
	}
	b := o.bundle("b", "/bin/true")
	o.forID(b, "pidjoin")
	o.editConfig(b, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		ns := []any{}
		for _, n := range l["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "mount" {
				ns = append(ns, n)
			}
		}
		l["namespaces"] = append(ns, map[string]any{"type": "mount", "path": "/proc/self/ns/mnt"})
	})
	logf := filepath.Join(o.dir, "log.json")
	o.fails("cannot join another", "--log", logf, "--log-format", "json", "create", "--bundle", b, "pidjoin")
	if lb, _ := os.ReadFile(logf); !strings.Contains(string(lb), "cannot join another") {
		t.Errorf("--log does not say why: %q", lb)
	}
	o.rt("delete", "--force", "pidjoin")
	o.nothingLeft("pidjoin")
}

// A bundle's process states its capabilities and noNewPrivileges: a non-root
// user gets them as given (runc's rules; skiff's own mode gives a non-root
// app none and always no_new_privs), and an exec'd non-root process too.
func TestOCINonRootCapabilitiesAndNoNewPrivs(t *testing.T) {
	o := newOCIEnv(t)
	show := "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status"
	b := o.bundle("b", "/bin/sh", "-c", show+"; sleep 1000")
	o.forID(b, "nr")
	// CAP_CHOWN bit 0, CAP_KILL bit 5, CAP_NET_BIND_SERVICE bit 10.
	caps := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	o.editConfig(b, func(c map[string]any) {
		p := c["process"].(map[string]any)
		p["user"] = map[string]any{"uid": 1000, "gid": 1000}
		p["noNewPrivileges"] = false
		p["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps}
	})
	want := []string{"CapInh:\t0000000000000421", "CapPrm:\t0000000000000421", "CapEff:\t0000000000000421",
		"CapBnd:\t0000000000000421", "CapAmb:\t0000000000000421", "NoNewPrivs:\t0"}
	out := filepath.Join(o.dir, "nr.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(o.bin, "--root", o.root, "create", "--bundle", b, "nr")
	c.Stdout, c.Stderr = f, f
	err = c.Run()
	f.Close()
	if err != nil {
		b, _ := os.ReadFile(out)
		t.Fatalf("create: %v: %s", err, b)
	}
	o.ok("start", "nr")
	waitFor(t, 60*time.Second, "the app's capabilities", func() bool {
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "NoNewPrivs")
	})
	got, _ := os.ReadFile(out)
	for _, w := range want {
		if !strings.Contains(string(got), w) {
			t.Errorf("non-root app: no %q in\n%s", w, got)
		}
	}
	// exec: a non-root process with capabilities and noNewPrivileges as
	// given (at most the container's).
	proc := map[string]any{"args": []string{"/bin/sh", "-c", show}, "cwd": "/", "env": []string{"PATH=/bin:/usr/bin"},
		"user": map[string]any{"uid": 1000, "gid": 1000}, "noNewPrivileges": false,
		"capabilities": map[string]any{"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps}}
	pj, _ := json.Marshal(proc)
	pf := filepath.Join(o.dir, "process.json")
	if err := os.WriteFile(pf, pj, 0o644); err != nil {
		t.Fatal(err)
	}
	r := o.ok("exec", "--process", pf, "nr")
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("non-root exec: no %q in\n%s%s", w, r.stdout, r.stderr)
		}
	}
	pid := o.state("nr").Pid
	o.ok("delete", "--force", "nr")
	o.nothingLeft("nr", pid)

	// noNewPrivileges true and no capabilities asked: none, and no_new_privs.
	b2 := o.bundle("b2", "/bin/sh", "-c", show)
	o.forID(b2, "nr2")
	o.editConfig(b2, func(c map[string]any) {
		p := c["process"].(map[string]any)
		p["user"] = map[string]any{"uid": 1000, "gid": 1000}
		p["noNewPrivileges"] = true
		p["capabilities"] = map[string]any{"bounding": caps}
	})
	r = o.ok("run", "--bundle", b2, "nr2")
	for _, w := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("non-root app with noNewPrivileges: no %q in\n%s%s", w, r.stdout, r.stderr)
		}
	}
	o.rt("delete", "--force", "nr2")
	o.nothingLeft("nr2")
}

// An AppArmor profile is applied as runc applies it, or the container does
// not run: on a host without AppArmor create fails (as runc's does) with one
// line that says why, and nothing is left; with AppArmor, a profile that is
// not loaded fails too (the kernel refuses it), never runs unconfined.
func TestOCIAppArmorProfileIsAppliedOrRefused(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "cat /proc/self/attr/current")
	o.forID(b, "aa")
	o.editConfig(b, func(c map[string]any) {
		c["process"].(map[string]any)["apparmorProfile"] = "skiff-test-not-loaded"
	})
	enabled := false
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err == nil {
		e, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled")
		enabled = len(e) > 0 && e[0] == 'Y'
	}
	r := o.rt("run", "--bundle", b, "aa")
	if r.code == 0 || strings.Contains(r.stdout, "unconfined") {
		t.Errorf("a container with a profile that cannot be applied ran: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !enabled && !o.isRunc && (r.code != 1 || !strings.Contains(r.stderr, "AppArmor is not enabled")) {
		t.Errorf("exit %d, stderr %q; want 1 and why", r.code, r.stderr)
	}
	o.rt("delete", "--force", "aa")
	o.nothingLeft("aa")
}

// delete cleans what skiff-oci made besides the container: a stage1 image in
// ROOT/.stage1 that its file no longer holds (a rebuilt or upgraded stage1)
// goes with the last container that ran on it, and the default cgroup parent
// /skiff-oci goes once empty. kill --all of a stopped container succeeds, as
// with runc.
func TestOCIDeleteCleansStage1CacheAndCgroupParent(t *testing.T) {
	o := newOCIEnv(t)
	if o.isRunc {
		t.Skip("skiff-oci's stage1 cache")
	}
	// A private copy of skiff-oci and its stage1, whose file the test
	// replaces by a rebuilt one (another manifest) while c1 runs on it.
	bin := filepath.Join(o.dir, "bin")
	s1 := filepath.Join(bin, "stage1-default.oci.tar")
	sh(t, o.dir, fmt.Sprintf("mkdir -p %s && cp %s %s/ && cp %s/stage1-default.oci.tar %s/", bin, o.bin, bin, filepath.Dir(o.bin), bin))
	o.bin = filepath.Join(bin, "skiff-oci")
	images := func() int {
		es, _ := os.ReadDir(filepath.Join(o.root, ".stage1/images/sha256"))
		return len(es)
	}
	b := o.bundle("b", "/bin/sleep", "1000") // no cgroupsPath: /skiff-oci/ID
	o.ok("create", "--bundle", b, "c1")
	pid1 := o.state("c1").Pid
	sh(t, o.dir, fmt.Sprintf("mkdir L1 && tar -xf %s -C L1 && umoci config --image L1:default --manifest.annotation=dev.skiff.test.rebuilt=1 >/dev/null && tar -C L1 -cf %s.new . && mv %s.new %s && rm -rf L1", s1, s1, s1, s1))
	o.ok("create", "--bundle", b, "c2")
	pid2 := o.state("c2").Pid
	if n := images(); n != 2 {
		t.Fatalf("%d stage1 images cached, want 2 (c1's and c2's)", n)
	}
	o.ok("start", "c1")
	o.ok("kill", "c1", "KILL")
	o.waitStatus("c1", "stopped")
	if r := o.rt("kill", "--all", "c1", "9"); r.code != 0 {
		t.Errorf("kill --all of a stopped container: exit %d, %s; runc exits 0", r.code, r.stderr)
	}
	o.ok("delete", "c1")
	if n := images(); n != 1 {
		t.Errorf("%d stage1 images cached after c1's delete, want 1: the replaced one goes with its last container", n)
	}
	o.ok("delete", "--force", "c2")
	if n := images(); n != 1 {
		t.Errorf("%d stage1 images cached after c2's delete, want 1 (the stage1 file's, kept for the next create)", n)
	}
	o.nothingLeft("c1", pid1)
	o.nothingLeft("c2", pid2)
	// The parent goes when empty; other containers (another test, another
	// --root) may still have theirs in it.
	for _, h := range []string{"memory", "pids", "unified"} {
		p := "/sys/fs/cgroup/" + h + "/skiff-oci"
		if es, err := os.ReadDir(p); err == nil {
			empty := true
			for _, e := range es {
				empty = empty && !e.IsDir()
			}
			if empty {
				t.Errorf("%s is left empty after the last delete", p)
			}
		}
	}
}

// A bundle's cgroup mount at /sys/fs/cgroup (runtime-spec's default lists
// one) shows the container's cgroups, read-only as asked, as with runc; not
// an empty directory.
func TestOCICgroupMount(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "grep ' /sys/fs/cgroup ' /proc/self/mountinfo; ls /sys/fs/cgroup; cat /proc/self/cgroup; mkdir /sys/fs/cgroup/x && echo mkdir-worked; true")
	o.forID(b, "cgm")
	o.editConfig(b, func(c map[string]any) {
		ms := c["mounts"].([]any)
		c["mounts"] = append(ms, map[string]any{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
			"options": []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
	})
	r := o.ok("run", "--bundle", b, "cgm")
	if !strings.Contains(r.stdout, "cgroup.procs") || !strings.Contains(r.stdout, " ro,") {
		t.Errorf("/sys/fs/cgroup is not the container's cgroups, read-only:\n%s%s", r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "mkdir-worked") {
		t.Errorf("a read-only cgroup mount was written:\n%s", r.stdout)
	}
	o.rt("delete", "--force", "cgm")
	o.nothingLeft("cgm")
}

// A signal sent right after start reaches the app's own handler (runtime-tools'
// killsig): start returns once the app runs and has set itself up, not while
// the unit's process is still systemd's fork or app-exec (which drop or die of
// it) nor before a shell has set its trap.
func TestOCISignalRightAfterStartReachesTheApp(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c", "trap 'touch /tmp/got-usr1; exit 0' USR1; sleep 1000 & wait $!")
	signalRightAfterStart(t, o, b, "sig", 6)
}

// signalRightAfterStart creates and starts n containers (IDs prefix0 on) of
// bundle b, whose app touches /tmp/got-usr1 on SIGUSR1 and exits, and
// sends each SIGUSR1 right after start: it must reach the trap.
func signalRightAfterStart(t *testing.T, o *ociEnv, b, prefix string, n int) {
	got := filepath.Join(b, "rootfs/tmp/got-usr1")
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		o.forID(b, id)
		os.Remove(got)
		o.ok("create", "--bundle", b, id)
		pid := o.state(id).Pid
		o.ok("start", id)
		o.ok("kill", id, "USR1")
		o.waitStatus(id, "stopped")
		if _, err := os.Stat(got); err != nil {
			t.Errorf("%s: SIGUSR1 right after start did not reach the app's trap", id)
		}
		o.ok("delete", id)
		o.nothingLeft(id, pid)
	}
}

// kill -9 of run (while it waits for the app) and of exec (while it waits
// for its process), then delete --force: nothing left, the exec'd process
// included; and delete --force kills the container at once rather than wait
// for the orphaned exec's enter (which lives as long as its process) as if it
// were a create still under way.
func TestOCIKilledRunAndExecThenDeleteForce(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sleep", "1000")
	o.forID(b, "r1")
	killAfter := func(what string, cond func() bool, args ...string) {
		t.Helper()
		c := exec.Command(o.bin, append([]string{"--root", o.root}, args...)...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		waitFor(t, 60*time.Second, what, func() bool {
			select {
			case <-done:
				return true
			default:
			}
			return cond()
		})
		c.Process.Signal(syscall.SIGKILL)
		<-done
	}
	running := func(id string) func() bool {
		return func() bool {
			r := o.rt("state", id)
			return r.code == 0 && strings.Contains(r.stdout, `"running"`)
		}
	}
	killAfter("run to start r1", running("r1"), "run", "--bundle", b, "r1")
	pid := o.state("r1").Pid
	execPids := func() []int {
		var ps []int
		for _, q := range nsPidsOf(pid) {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", q)); strings.Contains(string(cmd), "sleep\x00777") {
				ps = append(ps, q)
			}
		}
		return ps
	}
	killAfter("exec to run its process", func() bool { return len(execPids()) > 0 }, "exec", "r1", "/bin/sleep", "777")
	eps := execPids()
	if len(eps) != 1 {
		t.Fatalf("exec'd processes %v, want one", eps)
	}
	enter := ppidOf(eps[0])
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", enter)); strings.TrimSpace(string(comm)) == "app-exec" {
		enter = ppidOf(enter) // app-exec supervises it in the app's pid namespace
	}
	del := exec.Command(o.bin, "--root", o.root, "delete", "--force", "r1")
	if err := del.Start(); err != nil {
		t.Fatal(err)
	}
	// The init must be dying (or gone) by the time the orphaned enter ends.
	initDying := false
	waitFor(t, 120*time.Second, "the exec's enter to end", func() bool {
		if !exiting(enter) {
			return false
		}
		initDying = exiting(pid)
		return true
	})
	if !initDying {
		t.Errorf("the exec's enter (pid %d) ended while the init (pid %d) still ran: delete waited for it", enter, pid)
	}
	if err := del.Wait(); err != nil {
		t.Errorf("delete --force: %v", err)
	}
	o.nothingLeft("r1", append(eps, pid)...)
}

// ppidOf is pid's parent.
func ppidOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// exiting reports whether pid is gone, a zombie, or exiting (PF_EXITING).
func exiting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return true
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 7 || f[0] == "Z" || f[0] == "X" {
		return true
	}
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return flags&0x4 != 0
}

// nsPidsOf lists the processes in pid's pid namespace and in those nested
// in it (an app's own).
func nsPidsOf(pid int) []int {
	var ns syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &ns); err != nil {
		return nil
	}
	var out []int
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		q, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if inPidNSOf(q, ns) {
			out = append(out, q)
		}
	}
	return out
}

// inPidNSOf says whether pid's pid namespace is ns or one nested in it.
func inPidNSOf(pid int, ns syscall.Stat_t) bool {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/pid", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for depth := 0; err == nil && depth < 33; depth++ {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			break
		}
		if st.Dev == ns.Dev && st.Ino == ns.Ino {
			unix.Close(fd)
			return true
		}
		parent, perr := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		fd, err = parent, perr
	}
	if err == nil {
		unix.Close(fd)
	}
	return false
}

// A bundle's user namespace (issue #14, runtime-tools' linux_uid_mappings):
// the container's processes, systemd as its PID 1 and the app, run in a new
// user namespace with exactly the bundle's mappings. The app is root inside
// and sees the mappings in /proc/self/uid_map and gid_map; the host sees
// every process of the container as an id of the mapped range. A second
// container joins that user namespace by path.
func TestOCIUserNamespace(t *testing.T) {
	o := newOCIEnv(t)
	b := o.bundle("b", "/bin/sh", "-c",
		"{ echo id $(id -u) $(id -g); cat /proc/self/uid_map /proc/self/gid_map; } > /tmp/userns.out; exec sleep 1000")
	o.forID(b, "u1")
	o.editConfig(b, func(c map[string]any) {
		c["process"].(map[string]any)["user"] = map[string]any{"uid": 0, "gid": 0}
		l := c["linux"].(map[string]any)
		l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "user"})
		l["uidMappings"] = []map[string]any{{"containerID": 0, "hostID": 100000, "size": 65536}}
		// several ranges: gids 0-999 and 1000-65535 from two host ranges
		l["gidMappings"] = []map[string]any{{"containerID": 0, "hostID": 100000, "size": 1000},
			{"containerID": 1000, "hostID": 300000, "size": 64536}}
	})
	// The container's root writes its /tmp as others do (the rootfs is the
	// host root's, and the mapping does not map host root).
	if err := os.Chmod(filepath.Join(b, "rootfs/tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	o.ok("create", "--bundle", b, "u1")
	o.ok("start", "u1")
	o.waitStatus("u1", "running")
	out := filepath.Join(b, "rootfs/tmp/userns.out")
	waitFor(t, 60*time.Second, "the app to write "+out, func() bool {
		b, err := os.ReadFile(out)
		return err == nil && strings.Count(string(b), "\n") >= 4
	})
	got, _ := os.ReadFile(out)
	f := strings.Fields(string(got))
	want := "id 0 0 0 100000 65536 0 100000 1000 1000 300000 64536"
	if strings.Join(f, " ") != want {
		t.Errorf("inside the container: %q, want the ids and mappings %q", got, want)
	}
	mine, _ := os.Readlink("/proc/self/ns/user")
	// The app writes its file, then execs sleep: wait for the exec.
	hasSleep := func() bool {
		for _, pid := range nsPidsOf(o.state("u1").Pid) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				return true
			}
		}
		return false
	}
	waitFor(t, 30*time.Second, "the app to exec sleep", hasSleep)
	pids := nsPidsOf(o.state("u1").Pid)
	var sawApp, sawSystemd bool
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue // gone
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		sawApp = sawApp || name == "sleep"
		sawSystemd = sawSystemd || name == "systemd"
		mapped := map[string][][2]int{"Uid:": {{100000, 165536}}, "Gid:": {{100000, 101000}, {300000, 364536}}}
		for _, l := range strings.Split(string(st), "\n") {
			k := strings.Fields(l)
			if len(k) != 5 || mapped[k[0]] == nil {
				continue
			}
			for _, v := range k[1:] {
				n, _ := strconv.Atoi(v)
				in := false
				for _, r := range mapped[k[0]] {
					in = in || n >= r[0] && n < r[1]
				}
				if !in {
					t.Errorf("process %d (%s) of the container has host %s %v, outside the bundle's mapping", pid, name, k[0], k[1:])
					break
				}
			}
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid)); ns == mine {
			t.Errorf("process %d (%s) of the container is in the host's user namespace", pid, name)
		}
	}
	if !sawApp || !sawSystemd {
		t.Errorf("the container's pid namespace (%v) lacks the app (%v) or systemd (%v)", pids, sawApp, sawSystemd)
	}
	// A second container joins the first's user namespace by path, as a
	// Kubernetes pod's containers join the sandbox's.
	userns := fmt.Sprintf("/proc/%d/ns/user", o.state("u1").Pid)
	its, err := os.Readlink(userns)
	if err != nil {
		t.Fatal(err)
	}
	b2 := o.bundle("b2", "/bin/sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user")
	o.forID(b2, "u2")
	o.editConfig(b2, func(c map[string]any) {
		c["process"].(map[string]any)["user"] = map[string]any{"uid": 0, "gid": 0}
		l := c["linux"].(map[string]any)
		l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "user", "path": userns})
	})
	r := o.ok("run", "--bundle", b2, "u2")
	if f := strings.Fields(r.stdout); strings.Join(f, " ") != "0 0 100000 65536 "+its {
		t.Errorf("joining %s (%s): %q, want root, its mapping and it", userns, its, r.stdout)
	}
	o.nothingLeft("u2")
	o.ok("delete", "--force", "u1")
	o.nothingLeft("u1", pids...)
	if _, err := os.Stat("/run/skiff/rootfs/u1"); !os.IsNotExist(err) {
		t.Errorf("the stage1 rootfs mount point /run/skiff/rootfs/u1 is left (%v)", err)
	}
}
