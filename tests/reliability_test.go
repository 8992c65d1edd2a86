//go:build functional

package tests

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// removeCgroupTree removes a test's cgroup directory depth-first after
// killing what is in it (cleanup of a test that failed half-way).
func removeCgroupTree(dir string) {
	var dirs []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		b, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for j := 0; j < 100 && syscall.Rmdir(dirs[i]) == syscall.EBUSY; j++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestGCRemovesCgroupsLibcontainerNeverRecorded: a run killed while
// libcontainer made the pod's cgroups (here: cpuset made, state not saved
// yet) leaves cgroups, maybe with a dying process in them, that the pod's
// libcontainer state does not know. gc must remove them in every hierarchy,
// killing what is left, before it removes the pod; it used to delete the pod
// directory and leak the cgroups for good.
func TestGCRemovesCgroupsLibcontainerNeverRecorded(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the default stage1's cgroups")
	}
	uuid := strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"}, append(e.stage1, e.image("busybox"))...)...).stdout)
	var made []string
	for _, h := range []string{"cpuset", "pids", "memory", "unified"} {
		d := filepath.Join("/sys/fs/cgroup", h, "skiff", uuid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			continue // hierarchy not mounted here
		}
		made = append(made, d)
		t.Cleanup(func() { removeCgroupTree(d) })
	}
	if len(made) == 0 {
		t.Skip("no cgroup hierarchy to test with")
	}
	// A leftover below (what the pod's systemd makes in its cgroup2 tree) and a
	// process still in the pod's cgroup.
	_ = os.Mkdir(filepath.Join(made[len(made)-1], "init.scope"), 0o755)
	sleep := exec.Command("sleep", "555")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	procs := filepath.Join(made[len(made)-1], "init.scope", "cgroup.procs")
	if _, err := os.Stat(procs); err != nil {
		procs = filepath.Join(made[0], "cgroup.procs")
		if made[0] == filepath.Join("/sys/fs/cgroup/cpuset/skiff", uuid) && len(made) > 1 {
			procs = filepath.Join(made[1], "cgroup.procs")
		}
	}
	if err := os.WriteFile(procs, []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
		t.Fatalf("put a process into the pod's cgroup: %v", err)
	}
	r := e.skiff("gc", "--expire-prepared=0s", "--grace-period=0s")
	if left := cgroupsOf(uuid); len(left) > 0 {
		t.Fatalf("gc (exit %d, %q) left the pod's cgroups: %v", r.code, r.stdout+r.stderr, left)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "removed "+uuid) {
		t.Fatalf("gc: exit %d, stdout %q, stderr %q; want the pod removed", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 10*time.Second, "the process in the pod's cgroup to be killed", func() bool {
		return syscall.Kill(sleep.Process.Pid, 0) != nil || isZombie(sleep.Process.Pid)
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// TestGCAfterRunKilledDuringStart is the recipe: SIGKILL `skiff run`
// (default network) at moments of its start, gc at once: no pod, and no
// cgroup of any of them, may stay.
func TestGCAfterRunKilledDuringStart(t *testing.T) {
	e := newEnv(t)
	e.ok("--insecure-options=image", "fetch", e.image("busybox"))
	var uuids []string
	for i, d := range []time.Duration{50, 120, 200, 300, 450, 700} {
		uf := filepath.Join(t.TempDir(), "uuid")
		c := e.cmd(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "sleep", "100")...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		_ = c.Process.Kill()
		_ = c.Wait()
		uuids = append(uuids, e.podDirs()...)
		r := e.skiff("gc", "--grace-period=0s")
		if r.code != 0 {
			t.Errorf("kill %d: gc: exit %d: %s", i, r.code, r.stderr)
		}
		if ps := e.podDirs(); len(ps) > 0 {
			t.Errorf("kill %d: pods left after gc: %v (%s)", i, ps, r.stderr)
		}
	}
	for _, u := range uuids {
		for _, cg := range cgroupsOf(u) {
			t.Errorf("cgroup left behind by gc: %s", cg)
			removeCgroupTree(cg)
		}
	}
}

// tarHasLayout tells whether b is a tar holding an OCI layout.
func tarHasLayout(b []byte) bool {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			return false
		}
		if strings.TrimPrefix(h.Name, "./") == "oci-layout" {
			return true
		}
	}
}

// TestImageExportStreamsAndNeverReplaces: `image export ID -` and `image
// export ID /dev/stdout` stream to standard output (podman save's way), a
// fifo is streamed to, and a device or a directory is refused, still there
// after; none of them is replaced by a file.
func TestImageExportStreamsAndNeverReplaces(t *testing.T) {
	e := newEnv(t)
	img := e.image("busybox")
	e.ok("--insecure-options=image", "fetch", img)
	dir := t.TempDir()
	for _, target := range []string{"-", "/dev/stdout"} {
		c := e.cmd("image", "export", img, target)
		c.Dir = dir
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil || !tarHasLayout(out.Bytes()) {
			t.Errorf("image export %s: %v (%s); %d bytes on stdout, want an OCI archive", target, err, errb.String(), out.Len())
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "-")); err == nil {
		t.Errorf("image export -: wrote a file named '-'")
	}
	if fi, err := os.Lstat("/dev/stdout"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("/dev/stdout is no longer a link: %v %v", fi, err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- b
	}()
	r := e.skiff("image", "export", img, fifo)
	if r.code != 0 {
		_ = os.WriteFile(fifo, nil, 0) // let the reader go
		t.Errorf("image export FIFO: exit %d: %s", r.code, r.stderr)
	}
	if b := <-got; r.code == 0 && !tarHasLayout(b) {
		t.Errorf("image export FIFO: the reader got %d bytes, not an OCI archive", len(b))
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the fifo was replaced: %v %v", fi, err)
	}

	full := filepath.Join(dir, "full")
	if err := syscall.Mknod(full, syscall.S_IFCHR|0o666, 1<<8|7); err != nil { // /dev/full's numbers
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for what, p := range map[string]string{"device": full, "directory": sub} {
		e.fails(125, []string{p, what}, "image", "export", img, p)
	}
	if fi, err := os.Lstat(full); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("the device node was replaced: %v %v", fi, err)
	}
}

func codeString(c *int) string {
	if c == nil {
		return "none"
	}
	return strconv.Itoa(*c)
}

// TestKilledPodReports137: a pod killed on request (`stop --force`, or a
// second SIGTERM to run while it stops) reports 137 for the killed app and
// the pod, in run's exit and in status, never success.
func TestKilledPodReports137(t *testing.T) {
	check := func(t *testing.T, e *env, uuid string, r result) {
		t.Helper()
		if r.code != 137 {
			t.Errorf("run of the killed pod: exit %d, want 137\nstderr: %s", r.code, r.stderr)
		}
		st := e.status(uuid)
		if st.ExitCode == nil || *st.ExitCode != 137 {
			t.Errorf("status exitCode %s, want 137", codeString(st.ExitCode))
		}
		if len(st.Apps) != 1 || st.Apps[0].ExitCode == nil || *st.Apps[0].ExitCode != 137 {
			t.Errorf("status apps %+v, want the app's code 137", st.Apps)
		}
	}
	t.Run("stop --force", func(t *testing.T) {
		e := newEnv(t)
		uuid, wait := e.runningPod()
		e.ok("stop", "--force", uuid)
		check(t, e, uuid, wait())
	})
	t.Run("second SIGTERM", func(t *testing.T) {
		e := newEnv(t)
		uf := filepath.Join(t.TempDir(), "uuid")
		c, _, errb := e.startBackground(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sh", "-c",
			"trap '' TERM; while :; do sleep 1; done")...)
		var uuid string
		waitFor(t, 20*time.Second, "the pod to be ready", func() bool {
			b, err := os.ReadFile(uf)
			if err != nil || len(b) < 36 {
				return false
			}
			uuid = strings.TrimSpace(string(b))
			return e.status(uuid).Ready
		})
		_ = c.Process.Signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond) // the app ignores it; the stop timeout is 10 s
		_ = c.Process.Signal(syscall.SIGTERM)
		_ = c.Wait()
		check(t, e, uuid, result{code: c.ProcessState.ExitCode(), stderr: errb.String()})
	})
}
