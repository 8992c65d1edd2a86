//go:build functional

package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
	streamsToStdoutAndFifos(t, e, dir, "image export", func(target string) []string {
		return []string{"image", "export", img, target}
	}, tarHasLayout)

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

// streamsToStdoutAndFifos: the command args(TARGET) writes its output to
// standard output for TARGET "-" and "/dev/stdout" (no file named "-", the
// /dev/stdout link left as it is) and streams it to a fifo, which stays a
// fifo; valid says whether what arrived is the output wanted.
func streamsToStdoutAndFifos(t *testing.T, e *env, dir, what string, args func(target string) []string, valid func([]byte) bool) {
	t.Helper()
	for _, target := range []string{"-", "/dev/stdout"} {
		c := e.cmd(args(target)...)
		c.Dir = dir
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil || !valid(out.Bytes()) {
			t.Errorf("%s %s: %v (%s); stdout %.200q, not the output wanted", what, target, err, errb.String(), out.Bytes())
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "-")); err == nil {
		t.Errorf("%s -: wrote a file named '-'", what)
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
	r := e.skiff(args(fifo)...)
	if r.code != 0 {
		_ = os.WriteFile(fifo, nil, 0) // let the reader go
		t.Errorf("%s FIFO: exit %d: %s", what, r.code, r.stderr)
	}
	if b := <-got; r.code == 0 && !valid(b) {
		t.Errorf("%s FIFO: the reader got %d bytes, not the output wanted", what, len(b))
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the fifo was replaced: %v %v", fi, err)
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
		c, out, errb := e.startBackground(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sh", "-c",
			"trap '' TERM; echo trapped; while :; do sleep 1; done")...)
		var uuid string
		// Ready is not enough: the first SIGTERM must find the trap set.
		waitFor(t, 20*time.Second, "the pod to be ready and its app to ignore SIGTERM", func() bool {
			b, err := os.ReadFile(uf)
			if err != nil || len(b) < 36 {
				return false
			}
			uuid = strings.TrimSpace(string(b))
			return e.status(uuid).Ready && strings.Contains(out.String(), "trapped")
		})
		_ = c.Process.Signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond) // the app ignores it; the stop timeout is 10 s
		_ = c.Process.Signal(syscall.SIGTERM)
		_ = c.Wait()
		check(t, e, uuid, result{code: c.ProcessState.ExitCode(), stderr: errb.String()})
	})
}

// hostProcs lists the host's processes whose command line is exactly argv.
func hostProcs(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == want && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestEnterArgsAppsAndTerminal: `enter UUID -- CMD` runs CMD, --app may
// follow the UUID, a wrong app is refused with the pod's apps listed, and on
// a terminal the command gets a pty of its own as its controlling terminal,
// with enter's TERM (podman exec -it).
func TestEnterArgsAppsAndTerminal(t *testing.T) {
	e := newEnv(t)
	uuid, _ := e.runningPod()
	app := e.status(uuid).Apps[0].Name
	if r := e.ok("enter", uuid, "--", "ls", "/"); !strings.Contains(r.stdout, "bin") {
		t.Errorf("enter UUID -- ls /: %q", r.stdout)
	}
	if r := e.ok("enter", uuid, "--app="+app, "--", "echo", "hi"); r.stdout != "hi\n" {
		t.Errorf("enter UUID --app=%s -- echo hi: %q", app, r.stdout)
	}
	if r := e.ok("enter", uuid, "--app", app, "echo", "hi"); r.stdout != "hi\n" {
		t.Errorf("enter UUID --app %s echo hi: %q", app, r.stdout)
	}
	e.fails(125, []string{`"nope"`, app, "--app"}, "enter", uuid, "--app=nope", "true")

	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script(1) to give enter a terminal")
	}
	var line []string
	for _, a := range append(append([]string{e.bin}, e.globals()...), "enter", uuid, "/bin/sh", "-c",
		`tty; echo "TERM=$TERM"; echo ctty-ok >/dev/tty`) {
		line = append(line, shellQuote(a))
	}
	c := exec.Command("script", "-qec", strings.Join(line, " "), "/dev/null")
	c.Env = append(os.Environ(), "TERM=xterm-256color")
	out, err := c.CombinedOutput()
	for _, w := range []string{"/dev/pts/", "TERM=xterm-256color", "ctty-ok"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("enter on a terminal (%v): output %q lacks %q", err, out, w)
		}
	}
}

// TestEnterSignalsEndTheCommandAndNothingOutlivesIt: SIGTERM, SIGHUP or
// SIGINT to `skiff enter` (a dropped ssh session, Ctrl-C) reaches the
// entered command, and neither it nor what it started stays in the pod.
func TestEnterSignalsEndTheCommandAndNothingOutlivesIt(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("looks for the entered processes on the host (the kvm guest's are not there; its agent hangs them up)")
	}
	uuid, _ := e.runningPod()
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		marker := strconv.Itoa(5550 + i)
		c, _, _ := e.startBackground("enter", uuid, "/bin/sh", "-c", "sleep "+marker+"; true")
		waitFor(t, 20*time.Second, "the entered command to run", func() bool { return len(hostProcs("sleep", marker)) == 1 })
		_ = c.Process.Signal(sig)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%v: skiff enter did not end", sig)
		}
		waitFor(t, 20*time.Second, sig.String()+": the entered sh and sleep to be gone", func() bool {
			return len(hostProcs("sleep", marker)) == 0 && len(hostProcs("/bin/sh", "-c", "sleep "+marker+"; true")) == 0
		})
	}
}

// TestEnterKilledLeavesNoCommand: SIGKILL of `skiff enter` (it cannot
// forward it) still ends the entered command: app-exec's reaper between
// enter and the command has a parent-death signal.
func TestEnterKilledLeavesNoCommand(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("looks for the entered process on the host (the kvm guest's are not there)")
	}
	uuid, _ := e.runningPod()
	c, _, _ := e.startBackground("enter", uuid, "/bin/sleep", "5778")
	t.Cleanup(func() { // a leaked one would hold enter's stdout, which the harness reads to its end
		for _, pid := range hostProcs("/bin/sleep", "5778") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	waitFor(t, 20*time.Second, "the entered command to run", func() bool { return len(hostProcs("/bin/sleep", "5778")) == 1 })
	_ = c.Process.Kill()
	_, _ = c.Process.Wait() // not c.Wait: a leaked command holds enter's stdout
	waitFor(t, 20*time.Second, "the entered sleep to be gone after SIGKILL of enter", func() bool {
		return len(hostProcs("/bin/sleep", "5778")) == 0
	})
}

// TestEnterEndedLeavesNothingInThePod: SIGKILL or SIGHUP of `skiff enter`
// running a command that ignores SIGHUP and has started another process,
// and one in a session of its own (setsid: out of the command's process
// group), ends all three, in both flavors (looked for in the pod, through
// enter: the kvm guest's processes are not the host's). The reaper between
// enter (default flavor), or the guest agent's exec (kvm), and the command
// kills all it started once the enter or its stream is gone (or told to
// end and the command has not).
func TestEnterEndedLeavesNothingInThePod(t *testing.T) {
	e := newEnv(t)
	uuid, _ := e.runningPod()
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGHUP} {
		bg, fg, own := strconv.Itoa(5760+3*i), strconv.Itoa(5761+3*i), strconv.Itoa(5762+3*i)
		script := "trap '' HUP; setsid sleep " + own + " & sleep " + bg + " & sleep " + fg
		// Output to a file, not a pipe: a leaked process would hold a pipe,
		// and the harness would wait for its end (the pod's) to reap enter.
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		c := e.cmd("enter", uuid, "/bin/sh", "-c", script)
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		out.Close()
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		waitFor(t, 20*time.Second, sig.String()+": the entered command and its children to run", func() bool {
			return e.podProcs(uuid, "sleep", bg) == 1 && e.podProcs(uuid, "sleep", fg) == 1 && e.podProcs(uuid, "sleep", own) == 1
		})
		_ = c.Process.Signal(sig)
		_ = c.Wait()
		waitFor(t, 60*time.Second, sig.String()+": the entered sh and the three sleeps to be gone from the pod", func() bool {
			return e.podProcs(uuid, "sleep", bg)+e.podProcs(uuid, "sleep", fg)+e.podProcs(uuid, "sleep", own)+
				e.podProcs(uuid, "/bin/sh", "-c", script) == 0
		})
	}
}

// TestEnterOnATerminalKeepsJobControl: enter on a terminal gives the command
// the pty as its controlling terminal under the reaper (kvm: the guest
// agent's pty, which the reaper leaves to its child): an interactive shell
// has job control, Ctrl-C reaches the foreground command, and a background
// job (a process group of its own) is gone once enter is SIGKILLed.
func TestEnterOnATerminalKeepsJobControl(t *testing.T) {
	need(t, "script")
	e := newEnv(t)
	uuid, _ := e.runningPod()
	pidFile := filepath.Join(t.TempDir(), "enter.pid")
	// enter's pid (skiff execs stage1's enter: that pid) goes to pidFile.
	onATerminal := func(argv ...string) (*exec.Cmd, io.WriteCloser, *syncBuffer) {
		line := []string{"echo", "$$", ">" + shellQuote(pidFile) + ";", "exec"}
		for _, a := range argv {
			line = append(line, shellQuote(a))
		}
		c := exec.Command("script", "-qec", strings.Join(line, " "), "/dev/null")
		in, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); _ = c.Process.Kill(); _ = c.Wait() })
		return c, in, out
	}
	enter := append(append([]string{e.bin}, e.globals()...), "enter", uuid)

	// Ctrl-C: the terminal's SIGINT reaches the foreground command.
	c, in, out := onATerminal(append(enter, "/bin/sh", "-c", `trap 'echo got-INT; exit 5' INT; echo ready; sleep 5797`)...)
	// ^C once sleep runs: one that comes while the shell forks it is the
	// shell's alone (the child starts after it, or gets it before it
	// drops the shell's trap), and a non-interactive shell runs its trap
	// only when the foreground command ends.
	waitFor(t, 60*time.Second, "the entered command to run", func() bool {
		return strings.Contains(out.String(), "ready") && e.podProcs(uuid, "sleep", "5797") == 1
	})
	_, _ = in.Write([]byte{3})
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("Ctrl-C did not end the entered command; output %q", out.String())
	}
	if code := c.ProcessState.ExitCode(); code != 5 || !strings.Contains(out.String(), "got-INT") {
		t.Errorf("Ctrl-C: exit %d (want 5, the INT trap's), output %q", code, out.String())
	}

	// An interactive shell: job control on; its background job, in a
	// process group of its own, goes with a SIGKILLed enter.
	c, in, out = onATerminal(append(enter, "/bin/sh", "-i")...)
	_, _ = in.Write([]byte("sleep 5798 &\necho started\n"))
	waitFor(t, 20*time.Second, "the shell's background job to run", func() bool {
		return strings.Contains(out.String(), "started") && e.podProcs(uuid, "sleep", "5798") == 1
	})
	if strings.Contains(out.String(), "job control") {
		t.Errorf("the entered interactive shell has no job control: %q", out.String())
	}
	b, err := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("enter's pid: %q, %v", b, err)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 60*time.Second, "the background job to be gone after SIGKILL of enter", func() bool {
		return e.podProcs(uuid, "sleep", "5798") == 0
	})
}

// podProcs counts the processes in pod uuid (as its app sees them, through
// enter) whose command line is exactly argv.
func (e *env) podProcs(uuid string, argv ...string) int {
	e.t.Helper()
	r := e.ok("enter", uuid, "/bin/sh", "-c", `for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f"; echo; done 2>/dev/null`)
	n := 0
	for _, l := range strings.Split(r.stdout, "\n") {
		if l == strings.Join(argv, " ")+" " {
			n++
		}
	}
	return n
}

// TestEnterRunsWhereTheFilterDeniesPrctl: enter runs its command in an app
// whose seccomp filter denies prctl (nothing of enter's may need it once the
// app's filter is loaded), and the command has that filter. The app has
// no_new_privs: without it the filter is loaded before the capabilities are
// set (as runc does), which then need prctl, and the app itself cannot start.
func TestEnterRunsWhereTheFilterDeniesPrctl(t *testing.T) {
	e := newEnv(t)
	uuid, _ := e.runningPod("--no-new-privileges", "--seccomp=mode=remove,errno=EPERM,@default,prctl")
	r := e.ok("enter", uuid, "/bin/sh", "-c", "echo entered; grep '^Seccomp:' /proc/self/status")
	if !strings.Contains(r.stdout, "entered\n") || !regexp.MustCompile(`Seccomp:\s+2`).MatchString(r.stdout) {
		t.Errorf("enter in an app whose filter denies prctl: %q (want entered, and the app's filter: Seccomp: 2)", r.stdout)
	}
}

// TestEnterPassesSignals: a signal to `skiff enter` reaches the entered
// command as that signal, in both flavors (kvm: through the guest agent,
// not as a hangup): SIGUSR1 runs the command's trap, SIGTERM its TERM trap,
// whose exit code enter then exits with.
func TestEnterPassesSignals(t *testing.T) {
	e := newEnv(t)
	uuid, _ := e.runningPod()
	c, out, errb := e.startBackground("enter", uuid, "/bin/sh", "-c",
		`trap 'echo got-USR1' USR1; trap 'echo got-TERM; exit 3' TERM; trap 'echo got-HUP; exit 4' HUP; `+
			`echo ready; while :; do sleep 1; done`)
	waitFor(t, 20*time.Second, "the entered command to run", func() bool { return strings.Contains(out.String(), "ready") })
	_ = c.Process.Signal(syscall.SIGUSR1)
	waitFor(t, 20*time.Second, "the command's USR1 trap", func() bool { return strings.Contains(out.String(), "got-USR1") })
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("skiff enter did not end after SIGTERM; output %q", out.String())
	}
	if code := c.ProcessState.ExitCode(); code != 3 || !strings.Contains(out.String(), "got-USR1") ||
		!strings.Contains(out.String(), "got-TERM") || strings.Contains(out.String(), "got-HUP") {
		t.Errorf("enter: exit %d (want 3, the TERM trap's), output %q (want got-USR1 and got-TERM), stderr %q", code, out.String(), errb.String())
	}
}

// TestImageGCRemovesLeftoversOfKilledFetches: what killed fetches left in
// the store's tmp/ is removed by the next image gc (no fetch holds the store
// then), whatever its age; and an empty --dir (an unset variable) is refused
// instead of meaning the current directory.
func TestImageGCRemovesLeftoversOfKilledFetches(t *testing.T) {
	e := newEnv(t)
	e.ok("--insecure-options=image", "fetch", e.image("busybox"))
	tmp := filepath.Join(e.dir, "images", "tmp")
	if err := os.MkdirAll(filepath.Join(tmp, "layer-123", "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "blob-456"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.ok("image", "gc", "--grace-period=24h")
	if left, _ := os.ReadDir(tmp); len(left) != 0 || !strings.Contains(r.stdout, "2 leftovers") {
		t.Errorf("image gc: %q; tmp/ still holds %d entries", r.stdout, len(left))
	}
	if out := e.ok("image", "verify").stdout; !strings.Contains(out, "all blobs match") {
		t.Errorf("image verify after gc: %q", out)
	}

	cwd := t.TempDir()
	for _, flag := range []string{"--dir=", "--local-config=", "--system-config="} {
		c := e.cmd(flag, "--insecure-options=image", "fetch", e.image("busybox"))
		c.Dir = cwd
		var errb bytes.Buffer
		c.Stderr = &errb
		err := c.Run()
		if c.ProcessState.ExitCode() != 125 || !strings.Contains(errb.String(), strings.TrimSuffix(flag, "=")+" is empty") {
			t.Errorf("%s: %v, stderr %q; want exit 125 naming the flag", flag, err, errb.String())
		}
	}
	if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
		t.Errorf("an empty flag created %d entries in the current directory", len(ents))
	}
}

// stallingRegistry serves fr's image but holds every blob request until
// release is closed.
func stallingRegistry(t *testing.T, fr *fakeRegistry) (host string, started <-chan struct{}, release chan struct{}) {
	release = make(chan struct{})
	st := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			once.Do(func() { close(st) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		fr.serve(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		srv.Close()
	})
	return strings.TrimPrefix(srv.URL, "http://"), st, release
}

// TestStoreConcurrency: image gc while a run is preparing its pod never
// removes what the pod is about to use (it waits for the pod to name its
// images), two fetches of one image at once both work, image rm of an image
// a running pod uses is refused, and the store verifies after all of it.
func TestStoreConcurrency(t *testing.T) {
	e := newEnv(t)
	bb := e.image("busybox")
	e.ok("--insecure-options=image", "fetch", bb)

	// A two-app pod: busybox is in the store, the second app's image comes
	// from a registry that holds its blobs until told.
	fr := newFakeRegistry(t, filepath.Join(e.images, "layered.oci.tar"))
	host, started, release := stallingRegistry(t, fr)
	uf := filepath.Join(t.TempDir(), "uuid")
	run, _, runErr := e.startBackground(append([]string{"--insecure-options=image,http"}, e.runArgs("--uuid-file-save="+uf,
		bb, "--", "/bin/sh", "-c", "cat /bin/busybox >/dev/null && echo app-ok && sleep 600",
		"---", "docker://"+host+"/test/img:v1", "--name=second", "--", "/bin/true")[1:]...)...)
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatalf("the run never fetched from the registry: %s", runErr.String())
	}
	gc, gcOut, gcErr := e.startBackground("image", "gc", "--grace-period=0s")
	gcDone := make(chan struct{})
	go func() { _ = gc.Wait(); close(gcDone) }()
	select {
	case <-gcDone: // the old way: gc went ahead while the run prepared
	case <-time.After(time.Second):
	}
	close(release)
	select {
	case <-gcDone:
	case <-time.After(60 * time.Second):
		t.Fatalf("image gc did not end once the run had prepared its pod")
	}
	if gc.ProcessState.ExitCode() != 0 {
		t.Errorf("image gc: exit %d: %s", gc.ProcessState.ExitCode(), gcErr.String())
	}
	if strings.Contains(gcOut.String(), "removed image") {
		t.Fatalf("image gc removed an image the starting pod uses: %s", gcOut.String())
	}
	var uuid string
	waitFor(t, 60*time.Second, "the pod to be ready", func() bool {
		if run.ProcessState != nil {
			t.Fatalf("run ended: %s", runErr.String())
		}
		b, err := os.ReadFile(uf)
		if err != nil || len(b) < 36 {
			return false
		}
		uuid = strings.TrimSpace(string(b))
		return e.status(uuid).Ready
	})
	waitFor(t, 60*time.Second, "the busybox app to read its rootfs", func() bool {
		return strings.Contains(e.skiff("logs", uuid).stdout, "app-ok")
	})

	// image rm of an image the running pod uses: refused, naming the pod.
	e.fails(125, []string{uuid, "--force"}, "image", "rm", bb)

	// Two fetches of one image at once.
	ref := "docker://" + fr.host + "/test/img:v2"
	var cs []*exec.Cmd
	for range 2 {
		c, _, _ := e.startBackground(fetchArgs(ref)...)
		cs = append(cs, c)
	}
	for i, c := range cs {
		if err := c.Wait(); err != nil {
			t.Errorf("concurrent fetch %d: %v", i, err)
		}
	}
	e.ok("stop", uuid)
	if out := e.ok("image", "verify").stdout; !strings.Contains(out, "all blobs match") {
		t.Errorf("image verify: %q", out)
	}
}

// TestStopRightAfterStartIsNotLost: `skiff stop` of a pod whose run is still
// starting it (its UUID is out, its pid file not yet) stops it once it has
// started, instead of failing with "no pid yet" and leaving it running.
func TestStopRightAfterStartIsNotLost(t *testing.T) {
	e := newEnv(t)
	e.ok("--insecure-options=image", "fetch", e.image("busybox"))
	for i := range 3 {
		uf := filepath.Join(t.TempDir(), "uuid")
		c, _, errb := e.startBackground(e.runArgs("--net=default", "--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sleep", "600")...)
		var uuid string
		waitFor(t, 60*time.Second, "the pod's UUID", func() bool {
			b, err := os.ReadFile(uf)
			uuid = strings.TrimSpace(string(b))
			return err == nil && len(uuid) >= 36
		})
		r := e.skiff("stop", uuid)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			_ = c.Process.Kill()
			<-done
			t.Fatalf("round %d: the pod still ran 90 s after stop (exit %d: %s)", i, r.code, r.stderr)
		}
		if r.code != 0 {
			t.Errorf("round %d: stop right after the start: exit %d: %s (run: %s)", i, r.code, r.stderr, errb.String())
		}
	}
}

// TestGCKeepsAPodItCannotCleanYet: a pod whose cgroup cannot be removed yet
// (here: something mounted on a cgroup below it) stays in garbage, gc says
// which pod and why and exits non-zero; the next gc, once it can, removes
// both. gc used to drop the pod and leak the cgroup for good.
func TestGCKeepsAPodItCannotCleanYet(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the default stage1's cgroups")
	}
	uuid := strings.TrimSpace(e.ok(append([]string{"--insecure-options=image", "prepare"}, append(e.stage1, e.image("busybox"))...)...).stdout)
	pin := filepath.Join("/sys/fs/cgroup/pids/skiff", uuid, "pinned")
	if err := os.MkdirAll(pin, 0o755); err != nil {
		t.Skipf("no pids hierarchy: %v", err)
	}
	t.Cleanup(func() { removeCgroupTree(filepath.Dir(pin)) })
	if err := syscall.Mount("none", pin, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = syscall.Unmount(pin, syscall.MNT_DETACH)
		}
	}()
	r := e.skiff("gc", "--expire-prepared=0s", "--grace-period=0s")
	if r.code == 0 || !strings.Contains(r.stderr, uuid) || !strings.Contains(r.stderr, "next gc") {
		t.Errorf("gc of a pod it cannot clean: exit %d, stderr %q; want non-zero naming the pod and the retry", r.code, r.stderr)
	}
	if ps := e.podDirs(); len(ps) != 1 {
		t.Fatalf("the pod left garbage before its cgroup went: pods %v, cgroups %v", ps, cgroupsOf(uuid))
	}
	_ = syscall.Unmount(pin, 0)
	mounted = false
	e.ok("gc", "--expire-prepared=0s", "--grace-period=0s")
	if ps, cgs := e.podDirs(), cgroupsOf(uuid); len(ps) != 0 || len(cgs) != 0 {
		t.Errorf("second gc: pods %v, cgroups %v left", ps, cgs)
	}
}

// TestUUIDFileSaveStreams: --uuid-file-save=- and =/dev/stdout print the
// pod's UUID on run's standard output (a pipe here), a fifo gets it written
// in place, and a device or a link is refused before any pod is made, never
// replaced.
func TestUUIDFileSaveStreams(t *testing.T) {
	e := newEnv(t)
	img := e.image("busybox")
	dir := t.TempDir()
	streamsToStdoutAndFifos(t, e, dir, "run --uuid-file-save", func(target string) []string {
		return e.runArgs("--net=none", "--uuid-file-save="+target, img, "--", "/bin/true")
	}, uuidLine.Match)

	before := len(e.pods())
	full := filepath.Join(dir, "full")
	if err := syscall.Mknod(full, syscall.S_IFCHR|0o666, 1<<8|7); err != nil { // /dev/full's numbers
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Fatal(err)
	}
	for what, p := range map[string]string{"device": full, "symbolic link": link} {
		e.fails(125, []string{"--uuid-file-save", p, what}, e.runArgs("--net=none", "--uuid-file-save="+p, img, "--", "/bin/true")...)
	}
	if fi, err := os.Lstat(full); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("the device node was replaced: %v %v", fi, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}
	if n := len(e.pods()); n != before {
		t.Errorf("a refused --uuid-file-save left a pod: %d pods, %d before", n, before)
	}
}

var uuidLine = regexp.MustCompile(`(?m)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestGCRemovesAPodKilledBeforeItsManifest: a run killed while it prepared
// its pod, before it wrote the manifest, leaves a pod directory without
// one; gc moves it to garbage and removes it (no stage1 ever ran for it),
// instead of failing on it at every gc for ever.
func TestGCRemovesAPodKilledBeforeItsManifest(t *testing.T) {
	e := newEnv(t)
	const uuid = "0c0ffee0-1111-4222-8333-444455556666"
	if err := os.MkdirAll(filepath.Join(e.dir, "pods", "prepare", uuid, "apps", "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.skiff("gc", "--grace-period=0s")
	if r.code != 0 || !strings.Contains(r.stdout, "removed "+uuid) {
		t.Errorf("gc of a pod without a manifest: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if left := e.podDirs(); len(left) != 0 {
		t.Errorf("pod directories left after gc: %v", left)
	}
}

// TestGCSaysWhatHoldsAPodItCannotDestroy: a pod whose init cannot die (here:
// frozen in a freezer cgroup of the test's, out of gc's reach) is kept by gc,
// and gc's message names what holds it: the init's pid, name and state and
// the processes of its pid namespace (its app, a zombie the frozen init does
// not reap), so that whoever reads it knows what to look at. Thawed, the
// next gc removes it.
func TestGCSaysWhatHoldsAPodItCannotDestroy(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("the default stage1's libcontainer")
	}
	if _, err := os.Stat("/sys/fs/cgroup/freezer/cgroup.procs"); err != nil {
		t.Skipf("no cgroup v1 freezer hierarchy: %v", err)
	}
	uuid, run, wait := e.startPod(nil, e.image("busybox"), "--", "/bin/sleep", "600")
	pid := e.status(uuid).PID
	if pid <= 0 {
		t.Fatalf("running pod %s has no pid", uuid)
	}
	ice := filepath.Join("/sys/fs/cgroup/freezer", "skiff-test-"+uuid[:8])
	if err := os.Mkdir(ice, 0o755); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			_ = os.WriteFile(filepath.Join(ice, "freezer.state"), []byte("THAWED"), 0o644)
			thawed = true
		}
	}
	t.Cleanup(func() {
		thaw()
		waitFor(t, 20*time.Second, "the test's freezer cgroup to empty", func() bool {
			b, _ := os.ReadFile(filepath.Join(ice, "cgroup.procs"))
			return len(strings.TrimSpace(string(b))) == 0
		})
		_ = os.Remove(ice)
		e.cleanup()
	})
	if err := os.WriteFile(filepath.Join(ice, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ice, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = run.Process.Kill() // the run (the stage1) is gone; its pod stays, frozen
	wait()
	r := e.skiff("gc", "--grace-period=0s")
	t.Logf("gc of the frozen pod: exit %d:\n%s", r.code, r.stderr)
	want := fmt.Sprintf("container still running: init %d (systemd) ", pid)
	if r.code == 0 || !strings.Contains(r.stderr, uuid) || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "its pid namespace holds") {
		t.Errorf("gc of a pod whose init cannot die: exit %d, stderr:\n%s\nwant non-zero, naming the pod and %q and what its pid namespace holds", r.code, r.stderr, want)
	}
	if ps := e.podDirs(); len(ps) != 1 {
		t.Fatalf("gc dropped a pod whose init still runs: pods %v", ps)
	}
	thaw()
	e.ok("gc", "--grace-period=0s")
	if ps, cgs := e.podDirs(), cgroupsOf(uuid); len(ps) != 0 || len(cgs) != 0 {
		t.Errorf("gc once thawed: pods %v, cgroups %v left", ps, cgs)
	}
}
