//go:build functional

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The stage1 conformance suite: what every stage1 flavor must do, driven
// through bin/skiff only. SKIFF_STAGE1 picks the flavor under test.

func TestRunPrintsAndExitsWithAppCode(t *testing.T) {
	e := newEnv(t)
	r := e.skiff(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", "echo hi; exit 7")...)
	if r.code != 7 || r.stdout != "hi\n" {
		t.Fatalf("exit %d, stdout %q (stderr %q); want 7 and \"hi\\n\"", r.code, r.stdout, r.stderr)
	}
}

// TestOneFileOutputKeepsEachLinesStream: with skiff's stdout and stderr one
// file (`skiff run IMG >f 2>&1`, a unit's journal stream), the app still gets
// a pipe per stream, as podman's conmon gives it: skiff logs labels each line
// with its stream (stdout lines on its stdout, stderr lines on its stderr),
// each stream in the app's order, and the file has every line once, each
// stream in order. The app used to get one pipe for both, logged as stdout.
func TestOneFileOutputKeepsEachLinesStream(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 50
	c := e.cmd(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/sh", "-c",
		"i=1; while [ $i -le 50 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done")...)
	c.Stdout, c.Stderr = f, f // one file: >f 2>&1
	if err := c.Run(); err != nil {
		b, _ := os.ReadFile(f.Name())
		t.Fatalf("run: %v: %s", err, b)
	}
	var want [2][]string
	for i := 1; i <= n; i++ {
		want[0] = append(want[0], "out"+itoa(i))
		want[1] = append(want[1], "err"+itoa(i))
	}
	// The file: every line once, each stream in order (skiff's own warning
	// about the unsigned test image, and the kvm flavor's about TCG, aside).
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "out"):
			got[0] = append(got[0], l)
		case strings.HasPrefix(l, "err"):
			got[1] = append(got[1], l)
		case strings.HasPrefix(l, "skiff: WARNING"), strings.HasPrefix(l, "stage1-kvm: warning"):
		default:
			t.Errorf("run's output has a line the app did not write: %q", l)
		}
	}
	for i, name := range []string{"stdout", "stderr"} {
		if strings.Join(got[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("the app's %s in run's output (one file): %q, want %q", name, got[i], want[i])
		}
	}
	// skiff logs: each line on the stream the app wrote it to, in order.
	r := e.ok("logs", strings.TrimSpace(readFile(t, uf)))
	for i, out := range []string{r.stdout, r.stderr} {
		name := []string{"stdout", "stderr"}[i]
		if out != strings.Join(want[i], "\n")+"\n" {
			t.Errorf("skiff logs' %s: %q, want the app's %s lines in order", name, out, name)
		}
	}
}

// TestTerminalOutputKeepsTheAppsOrder: on a terminal (without --interactive)
// the screen shows the app's stdout and stderr lines in the order it wrote
// them: the default flavor hands the terminal over, the kvm flavor carries
// both streams through one port. Two pipes or ports, as for a file, would
// show bursts of one stream before the other.
func TestTerminalOutputKeepsTheAppsOrder(t *testing.T) {
	need(t, "script")
	e := newEnv(t)
	args := append(e.globals(), e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c",
		"'i=1; while [ $i -le 50 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done'")...)
	out, err := exec.Command("script", "-qec", e.bin+" "+strings.Join(args, " "), "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("run on a terminal: %v\n%s", err, out)
	}
	var got, want []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "out") || strings.HasPrefix(l, "err") {
			got = append(got, l)
		}
	}
	for i := 1; i <= 50; i++ {
		want = append(want, "out"+itoa(i), "err"+itoa(i))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the app's lines on the terminal: %q, want %q", got, want)
	}
}

func TestExitCodesForMissingAndUnexecutableCommands(t *testing.T) {
	e := newEnv(t)
	e.fails(127, []string{"/no/such/cmd", "not found"}, e.runArgs(e.image("busybox"), "--exec=/no/such/cmd")...)
	e.fails(127, []string{"nosuchcmd", "not found"}, e.runArgs(e.image("busybox"), "--", "nosuchcmd")...)
	e.fails(126, []string{"/etc/passwd"}, e.runArgs(e.image("busybox"), "--exec=/etc/passwd")...)
}

func TestImageConfigAndAppFlags(t *testing.T) {
	e := newEnv(t)
	r := e.ok(e.runArgs(e.image("inspect"), "--set-env=FOO=bar", "--working-dir=/tmp", "--", "env", "cwd", "ids")...)
	for _, want := range []string{"FOO=bar\n", "PATH=", "cwd=/tmp\n", "uid=0\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.ok(e.runArgs(e.image("inspect"), "--user=app", "--", "ids")...)
	if !strings.Contains(r.stdout, "uid=1000\n") {
		t.Errorf("--user=app: %s", r.stdout)
	}
	r = e.ok(e.runArgs(e.image("busybox"), "--exec=/bin/echo", "--", "a", "b")...)
	if r.stdout != "a b\n" {
		t.Errorf("--exec: %q", r.stdout)
	}
	e.fails(125, []string{"nosuchuser"}, e.runArgs(e.image("inspect"), "--user=nosuchuser", "--", "ids")...)
}

func TestPodSandbox(t *testing.T) {
	e := newEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := e.ok(e.runArgs("--uuid-file-save="+uuidFile, e.image("inspect"), "--", "pid1", "hostname", "cgroups")...)
	b, err := os.ReadFile(uuidFile)
	if err != nil {
		t.Fatal(err)
	}
	uuid := strings.TrimSpace(string(b))
	for _, want := range []string{"pid1=systemd\n", "hostname=skiff-" + uuid[:8] + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.ok(e.runArgs("--hostname=web1", e.image("inspect"), "--", "hostname")...)
	if !strings.Contains(r.stdout, "hostname=web1\n") {
		t.Errorf("--hostname: %s", r.stdout)
	}
}

func TestNetworkNoneAndHost(t *testing.T) {
	e := newEnv(t)
	r := e.ok(e.runArgs("--net=none", e.image("busybox"), "--", "/bin/sh", "-c", "ls /sys/class/net")...)
	if strings.Fields(r.stdout)[0] != "lo" || len(strings.Fields(r.stdout)) != 1 {
		t.Errorf("--net=none: interfaces %q, want only lo", r.stdout)
	}
	// --net=host: the app is in the host's own network namespace; a flavor
	// whose pod has a kernel of its own refuses it, saying why.
	if e.flavor() == "kvm" {
		e.fails(125, []string{"--net=host", "VM"}, e.runArgs("--net=host", e.image("busybox"), "--", "/bin/true")...)
		return
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	r = e.ok(e.runArgs("--net=host", e.image("busybox"), "--", "/bin/readlink", "/proc/self/ns/net")...)
	if strings.TrimSpace(r.stdout) != host {
		t.Errorf("--net=host: the app's network namespace is %q, the host's %q", r.stdout, host)
	}
}

func TestWhiteoutsHideLowerLayers(t *testing.T) {
	e := newEnv(t)
	r := e.skiff(e.runArgs(e.image("layered"), "--", "/bin/sh", "-c", "ls -A /data /opaque; test -e /data/deleted && echo STILL-THERE; true")...)
	if r.code != 0 || strings.Contains(r.stdout, "STILL-THERE") {
		t.Fatalf("exit %d; a deleted file shows through: %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestLifecycleListStatusGCRm(t *testing.T) {
	e := newEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	e.skiff(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--", "/bin/sh", "-c", "exit 3")...)
	b, _ := os.ReadFile(uuidFile)
	uuid := strings.TrimSpace(string(b))
	ps := e.pods()
	if len(ps) != 1 || ps[0].UUID != uuid || ps[0].State != "exited" {
		t.Fatalf("list: %+v", ps)
	}
	st := e.status(uuid[:8])
	if st.ExitCode == nil || *st.ExitCode != 3 || st.Apps[0].ExitCode == nil || *st.Apps[0].ExitCode != 3 {
		t.Fatalf("status: %+v", st)
	}
	if st.Created == nil || st.Started == nil || st.Exited == nil || st.Exited.Before(*st.Started) {
		t.Errorf("timestamps: %+v", st)
	}
	table := e.ok("list", "--no-legend").stdout
	if strings.Contains(table, "UUID") || !strings.Contains(table, uuid) {
		t.Errorf("list --no-legend: %q", table)
	}
	e.ok("cat-manifest", uuid)
	// gc marks first; with a grace period the pod stays.
	e.ok("gc", "--grace-period=1h")
	if ps := e.pods(); len(ps) != 1 || ps[0].State != "exited-garbage" {
		t.Fatalf("after gc --grace-period=1h: %+v", ps)
	}
	e.ok("gc", "--grace-period=0s")
	e.ok("gc", "--grace-period=0s") // twice is fine
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("after gc: %+v", ps)
	}
	e.skiff(e.runArgs("--uuid-file-save="+uuidFile, e.image("busybox"), "--", "/bin/true")...)
	b, _ = os.ReadFile(uuidFile)
	e.ok("rm", strings.TrimSpace(string(b)))
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("after rm: %+v", ps)
	}
}

// waitForSleep waits until the app of a runningPod has exec'd its sleep (a
// ready pod's app unit has started, but app-exec may not have exec'd yet).
func (e *env) waitForSleep(uuid string) {
	e.t.Helper()
	waitFor(e.t, 20*time.Second, "the app to exec sleep", func() bool {
		return e.skiff("enter", uuid, "/bin/sh", "-c", "pidof sleep").code == 0
	})
}

// runningPod starts a long-running pod and waits until it is ready.
func (e *env) runningPod(extra ...string) (uuid string, wait func() result) {
	e.t.Helper()
	uuidFile := filepath.Join(e.t.TempDir(), "uuid")
	args := e.runArgs(append([]string{"--uuid-file-save=" + uuidFile, e.image("busybox")},
		append(extra, "--", "/bin/sleep", "600")...)...)
	c, out, errb := e.startBackground(args...)
	waitFor(e.t, 20*time.Second, "the pod to be ready", func() bool {
		b, err := os.ReadFile(uuidFile)
		if err != nil || len(b) < 36 {
			return false
		}
		uuid = strings.TrimSpace(string(b))
		return e.status(uuid).Ready
	})
	return uuid, func() result {
		err := c.Wait()
		r := result{stdout: out.String(), stderr: errb.String(), code: c.ProcessState.ExitCode()}
		_ = err
		return r
	}
}

func TestSIGTERMStopsThePodCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t)
			uuid, wait := e.runningPod()
			if st := e.status(uuid); st.State != "running" || st.PID <= 0 {
				t.Fatalf("status of a running pod: %+v", st)
			}
			e.fails(125, []string{uuid, "running", "skiff stop"}, "rm", uuid)
			pid := e.runPID(uuid)
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatal(err)
			}
			r := wait()
			if r.code != 0 {
				t.Fatalf("after %v: exit %d, stderr %q", sig, r.code, r.stderr)
			}
			if st := e.status(uuid); st.State != "exited" {
				t.Fatalf("after %v: %+v", sig, st)
			}
		})
	}
}

// TestSignalsDuringCleanupDoNotStopIt: SIGTERMs sent to run without pause (a
// stop, a kill, then more: `systemctl stop` landing while the pod ends)
// neither kill run halfway through its cleanup nor leave anything of the pod
// for gc: run exits with the killed pod's 137, recorded in status, with no
// mount and no cgroup left before any gc. stage1 used to stop catching
// signals once the pod's init exited, and the next SIGTERM killed it there.
// The app ignores SIGTERM, so the first SIGTERM's clean halt cannot end it
// before a later one kills the pod (with an app that ends on SIGTERM, a
// loaded machine could delay the second signal until the app had stopped
// cleanly, and the pod's code would rightly be 0).
func TestSignalsDuringCleanupDoNotStopIt(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	c, _, errb := e.startBackground(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--",
		"/bin/sh", "-c", "trap '' TERM; sleep 600")...)
	var uuid string
	waitFor(t, 60*time.Second, "the pod to be ready", func() bool {
		b, err := os.ReadFile(uf)
		if err != nil || len(b) < 36 {
			return false
		}
		uuid = strings.TrimSpace(string(b))
		return e.status(uuid).Ready
	})
	// A pidfd: the spray can never reach another process that reuses the pid.
	pidfd, err := unix.PidfdOpen(c.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	sent := 0
spray:
	for {
		select {
		case <-done:
			break spray
		default:
		}
		if unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0) == nil {
			sent++
		}
		time.Sleep(200 * time.Microsecond)
	}
	ws := c.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Fatalf("run was killed by %v (after %d SIGTERMs) instead of finishing its cleanup\nstderr: %s", ws.Signal(), sent, errb.String())
	}
	if code := ws.ExitStatus(); code != 137 {
		t.Errorf("run: exit %d, want 137 (a pod killed on request)\nstderr: %s", code, errb.String())
	}
	// Everything undone by run itself, before any gc.
	for _, m := range mountsUnder(e.dir) {
		t.Errorf("mount left behind by run: %s", m)
	}
	for _, cg := range cgroupsOf(uuid) {
		t.Errorf("cgroup left behind by run: %s", cg)
	}
	if st := e.status(uuid); st.State != "exited" || st.ExitCode == nil || *st.ExitCode != 137 {
		t.Errorf("status after run: state %s, exit code %s; want exited, 137", st.State, codeString(st.ExitCode))
	}
}

// runPID finds skiff run's own pid (the process that holds the pod lock), the
// parent of the pod's init.
func (e *env) runPID(uuid string) int {
	e.t.Helper()
	st := e.status(uuid)
	b, err := os.ReadFile(filepath.Join("/proc", itoa(st.PID), "stat"))
	if err != nil {
		e.t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return atoi(e.t, f[1])
}

// TestStopCommand: stop returns once the pod has exited, its run too (exit
// recorded, the pod's lock released), so `skiff stop X && skiff rm X` needs
// no wait in between.
func TestStopCommand(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod()
	e.ok("stop", uuid)
	if st := e.status(uuid); st.State == "running" || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Errorf("the pod right after skiff stop returned: %+v", st)
	}
	e.fails(125, []string{uuid, "not running"}, "stop", uuid)
	e.ok("rm", uuid)
	if r := wait(); r.code != 0 {
		t.Fatalf("skiff run after skiff stop: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestStopManyPods: one `skiff stop` of several pods stops every running one,
// even when a pod before them cannot be stopped (it has exited): that one is
// reported and stop fails, the others are stopped all the same.
func TestStopManyPods(t *testing.T) {
	e := newEnv(t)
	uf := filepath.Join(t.TempDir(), "uuid")
	e.ok(e.runArgs("--uuid-file-save="+uf, e.image("busybox"), "--", "/bin/true")...)
	exited := uuidOf(t, uf)
	a, waitA := e.runningPod()
	b, waitB := e.runningPod()
	r := e.fails(125, []string{exited, "not running"}, "stop", a, exited, b)
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("skiff stop: stdout %q, want the two running pods' UUIDs in the order given", r.stdout)
	}
	for uuid, wait := range map[string]func() result{a: waitA, b: waitB} {
		waitFor(t, 30*time.Second, "pod "+uuid+" to end after skiff stop", func() bool { return e.status(uuid).State != "running" })
		if r := wait(); r.code != 0 {
			t.Errorf("skiff run of pod %s after skiff stop: exit %d, stderr %q", uuid, r.code, r.stderr)
		}
	}
}

func TestSIGKILLedSkiffLeavesNothingAfterGC(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod()
	initPID := e.status(uuid).PID
	if err := syscall.Kill(e.runPID(uuid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait()
	waitFor(t, 10*time.Second, "the pod's init to die with skiff", func() bool {
		return syscall.Kill(initPID, 0) != nil
	})
	if st := e.status(uuid); st.State != "exited" {
		t.Fatalf("after SIGKILL: %+v", st)
	}
	e.ok("gc", "--grace-period=0s")
	if ps := e.pods(); len(ps) != 0 {
		t.Fatalf("pods left: %+v", ps)
	}
	if cgs := cgroupsOf(uuid); len(cgs) != 0 {
		t.Fatalf("cgroups left: %v", cgs)
	}
	if ms := mountsUnder(e.dir); len(ms) != 0 {
		t.Fatalf("mounts left: %v", ms)
	}
}

func TestPodCgroupsWhileRunning(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod()
	if cgs := cgroupsOf(uuid); len(cgs) == 0 {
		t.Errorf("running pod %s has no cgroup on the host", uuid)
	}
	e.ok("stop", uuid)
	wait()
	e.ok("gc", "--grace-period=0s")
	if cgs := cgroupsOf(uuid); len(cgs) != 0 {
		t.Errorf("cgroups left after gc: %v", cgs)
	}
}

func TestInteractiveGivesTheAppStdin(t *testing.T) {
	e := newEnv(t)
	c := e.cmd(e.runArgs("--interactive", e.image("busybox"), "--", "/bin/sh", "-c", "read line; echo got:$line")...)
	c.Stdin = strings.NewReader("hello\n")
	out, err := c.Output()
	if err != nil || string(out) != "got:hello\n" {
		t.Fatalf("interactive: %q, %v", out, err)
	}
	// Without --interactive the app's stdin is empty.
	c = e.cmd(e.runArgs(e.image("busybox"), "--", "/bin/sh", "-c", "cat; echo end")...)
	c.Stdin = strings.NewReader("not for the app\n")
	out, err = c.Output()
	if err != nil || string(out) != "end\n" {
		t.Fatalf("non-interactive: %q, %v", out, err)
	}
}

// With a terminal on stdin, --interactive gives the app that terminal.
func TestInteractiveTerminal(t *testing.T) {
	need(t, "script")
	e := newEnv(t)
	args := append(e.globals(), e.runArgs("--interactive", e.image("inspect"), "--", "tty")...)
	cmd := e.bin + " " + strings.Join(args, " ")
	c := exec.Command("script", "-qec", cmd, "/dev/null")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "stdin_tty=true") || !strings.Contains(string(out), "stdout_tty=true") {
		t.Fatalf("app did not get the terminal: %s", out)
	}
}

func TestStatusWaitAndEnter(t *testing.T) {
	e := newEnv(t)
	uuid, wait := e.runningPod("--user=app")
	r := e.ok("enter", uuid, "/bin/sh", "-c", "id -u; cat /proc/1/comm; hostname")
	if r.stdout != "1000\nsystemd\nskiff-"+uuid[:8]+"\n" {
		t.Errorf("enter: %q", r.stdout)
	}
	if r := e.skiff("enter", uuid, "/bin/sh", "-c", "exit 5"); r.code != 5 {
		t.Errorf("enter exit code %d, want 5", r.code)
	}
	e.fails(125, []string{"no app", "nosuch"}, "enter", "--app=nosuch", uuid)
	e.fails(125, []string{"still running"}, "status", "--wait=200ms", uuid)
	done := make(chan result, 1)
	go func() { done <- e.skiff("status", "--wait", "--format=json", uuid) }()
	e.ok("stop", uuid)
	wait()
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stdout, `"state":"exited"`) {
			t.Fatalf("status --wait: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("status --wait did not return after the pod exited")
	}
	e.fails(125, []string{"not running"}, "enter", uuid, "/bin/true")
}

func TestSignalsReachTheApp(t *testing.T) {
	e := newEnv(t)
	c, out, errb := e.startBackground(e.runArgs("--net=none", e.image("busybox"), "--", "/bin/sh", "-c",
		"trap 'echo got-hup' HUP; trap 'echo got-usr1' USR1; echo trapping; while :; do sleep 0.1; done")...)
	waitFor(t, 20*time.Second, "the app's traps", func() bool { return strings.Contains(out.String(), "trapping") })
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1} {
		if err := c.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		want := map[syscall.Signal]string{syscall.SIGHUP: "got-hup", syscall.SIGUSR1: "got-usr1"}[sig]
		waitFor(t, 10*time.Second, want, func() bool { return strings.Contains(out.String(), want) })
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; %s", err, errb.String())
	}
}
func TestLogsFollowAndSurviveTheExit(t *testing.T) {
	e := newEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	c, out, _ := e.startBackground(e.runArgs("--net=none", "--uuid-file-save="+uuidFile, e.image("busybox"), "--", "/bin/sh", "-c",
		"echo one; sleep 1; echo two >&2; sleep 1; printf 'three\\nfour'")...)
	var uuid string
	waitFor(t, 20*time.Second, "the pod's uuid", func() bool {
		b, err := os.ReadFile(uuidFile)
		uuid = strings.TrimSpace(string(b))
		return err == nil && len(uuid) >= 36 && e.status(uuid).PID > 0
	})
	follow := e.cmd("logs", "--follow", uuid)
	var fout, ferr syncBuffer
	follow.Stdout, follow.Stderr = &fout, &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "--follow to stream 'one' while the pod runs", func() bool {
		return strings.Contains(fout.String(), "one\n")
	})
	if st := e.status(uuid); st.State != "running" {
		t.Fatalf("the pod is %s; --follow did not stream live", st.State)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	_ = c.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs --follow: %v: %s", err, ferr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs --follow did not end with the pod")
	}
	if out.String() != "one\nthree\nfour" {
		t.Errorf("skiff run's own output %q", out.String())
	}
	if fout.String() != "one\nthree\nfour" || ferr.String() != "two\n" {
		t.Errorf("logs --follow: stdout %q stderr %q", fout.String(), ferr.String())
	}
	e.ok("gc", "--mark-only")
	if st := e.status(uuid); st.State != "exited-garbage" {
		t.Fatalf("after gc --mark-only: %+v", st)
	}
	r := e.ok("logs", "--timestamps", "--app=busybox", uuid)
	lines := strings.Split(r.stdout, "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " one") || !strings.HasSuffix(lines[2], " four") {
		t.Errorf("logs after the exit: %q", r.stdout)
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.Fields(lines[0])[0]); err != nil {
		t.Errorf("--timestamps: %v", err)
	}
	e.fails(125, []string{"no app", "nosuch"}, "logs", "--app=nosuch", uuid)
}

func TestVersionAndHelp(t *testing.T) {
	e := newEnv(t)
	r := e.ok("version")
	if !strings.Contains(r.stdout, "stage1 interface version 2") {
		t.Errorf("version: %q", r.stdout)
	}
	for _, verb := range []string{"run", "list", "status", "gc", "rm", "stop", "enter", "cat-manifest", "version"} {
		if r := e.ok(verb, "--help"); !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%s --help: %q", verb, r.stdout)
		}
	}
}
