package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1-kvm/guest"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/podnet"
)

// stopWait is how long a stop waits for the VM to power off before it kills
// QEMU: the apps' stop timeout, and time for the guest to get there under
// TCG.
func stopWait(stopTimeout time.Duration) time.Duration {
	if stopTimeout <= 0 {
		stopTimeout = 10 * time.Second
	}
	return stopTimeout + 10*time.Second
}

// vmPid returns the pid of the pod's QEMU from the pid file, or 0 when that
// process is gone (or is no longer this pod's QEMU: its command line names
// the pod).
func vmPid(uuid string) (int, error) { return vmPidFrom(abi.PIDFile, uuid) }

// vmPidFrom is vmPid reading the pid from file (OCI mode: s1QEMUPid).
func vmPidFrom(file, uuid string) (int, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pod pid file holds %q", strings.TrimSpace(string(b)))
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(vmName(uuid))) {
		return 0, nil
	}
	return pid, nil
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has ended already.
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// waitGone waits until pid has ended, at most d.
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return !alive(pid)
}

// stopMain: stop [--force] UUID. Asks the pod agent to power the VM off
// through the pod's systemd (apps get SIGTERM, then SIGKILL after their stop
// timeout) and waits for QEMU to end; kills QEMU when that takes too long,
// or at once with --force. It returns once run has ended too.
func stopMain(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	force := fs.Bool("force", false, "kill the pod at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: stop [--force] UUID")
	}
	// (run may not have made the stage1 directory yet: the pod is started
	// from the moment stage0 marks it running.)
	if err := os.MkdirAll(abi.Stage1Dir, 0o755); err != nil {
		return fmt.Errorf("mark the pod as stopping: %w", err)
	}
	// The markers first: a run that has not started QEMU yet acts on them
	// once it has, so a stop is never lost.
	if *force {
		_ = os.WriteFile(s1Kill, nil, 0o644)
	}
	if err := os.WriteFile(s1Stop, nil, 0o644); err != nil {
		return fmt.Errorf("mark the pod as stopping: %w", err)
	}
	var pid int
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if pid, err = vmPid(fs.Arg(0)); err != nil || pid != 0 || time.Now().After(deadline) {
			break
		}
		if _, err := os.Stat(abi.PodExitFile); err == nil {
			return nil // it has ended already
		}
	}
	if err != nil {
		return err
	}
	if pid == 0 {
		return errors.New("the pod's VM has not started within 30s; it stops as soon as it does")
	}
	wait := 5 * time.Second
	if !*force {
		var cfg guest.Config
		_ = abi.ReadJSON(guest.ConfigFile, &cfg)
		wait = stopWait(cfg.StopTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := agent.NewClient(agent.SocketFile).Stop(ctx, agent.StopRequest{})
		cancel()
		if err != nil && !errors.Is(err, agent.ErrDisconnected) && alive(pid) {
			fmt.Fprintf(os.Stderr, "skiff: the pod agent did not take the stop (%v); killing the VM\n", err)
			*force = true
		}
	}
	if *force {
		_ = os.WriteFile(s1Kill, nil, 0o644)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if !waitGone(pid, wait) {
		_ = os.WriteFile(s1Kill, nil, 0o644)
		_ = unix.Kill(pid, unix.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	// And for run's end: its cleanup, the exit record, the pod's lock.
	abi.WaitRunEnded(10 * time.Second)
	return nil
}

// gcMain: gc UUID. run's mounts live in its own mount namespace, so what can
// be left after a crash of run is QEMU (it dies with run through its
// parent-death signal; this covers the rest), the pod's network and its
// cgroup. Safe to run twice.
func gcMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: gc UUID")
	}
	cg := "/skiff/" + args[0]
	pidFile := abi.PIDFile
	if b, err := os.ReadFile(s1OCICgroup); err == nil { // OCI mode (oci.go)
		cg, pidFile = string(b), s1QEMUPid
		if !strings.HasPrefix(cg, "/") || strings.Contains(cg, "..") {
			return fmt.Errorf("%s holds %q, not a cgroup path", s1OCICgroup, cg)
		}
		// A supervisor whose front end never learnt it ran (killed during
		// create), still waiting for start.
		if pid := supervisorPid(args[0]); pid != 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
			if !waitGone(pid, 5*time.Second) {
				return fmt.Errorf("supervisor (pid %d) still there after SIGKILL", pid)
			}
		}
	}
	pid, err := vmPidFrom(pidFile, args[0])
	if err != nil {
		return err
	}
	if pid != 0 {
		_ = unix.Kill(pid, unix.SIGKILL)
		if !waitGone(pid, 5*time.Second) {
			return fmt.Errorf("qemu (pid %d) still there after SIGKILL", pid)
		}
	}
	return errors.Join(podnet.TeardownDir("."), destroyPodCgroup(cg))
}

// enterMain: enter --pid=P --app=NAME -- CMD... Runs CMD inside the app
// through the pod agent (app-exec in the guest: the app's rootfs, user,
// capabilities, seccomp filter and cgroup), on a pseudo-terminal when
// enter's stdin is one.
func enterMain(args []string) error {
	fs := flag.NewFlagSet("enter", flag.ContinueOnError)
	fs.Int("pid", 0, "the pod's pid (from the pid file)")
	app := fs.String("app", "", "the app to enter")
	var x ociExec
	fs.StringVar(&x.process, abi.EnterFlagProcess, "", "an OCI process spec (JSON) to run instead of CMD (OCI exec)")
	fs.BoolVar(&x.detach, abi.EnterFlagDetach, false, "return once the process runs")
	fs.StringVar(&x.pidFile, abi.EnterFlagPidFile, "", "write the process's host pid there")
	fs.StringVar(&x.consoleSocket, abi.EnterFlagConsoleSocket, "", "with process.terminal: send the pty master there")
	fs.BoolVar(&x.child, "oci-exec-child", false, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *app == "" {
		var m abi.PodManifest
		if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
			return err
		}
		if len(m.Apps) == 1 {
			*app = m.Apps[0].Name
		}
	}
	req := agent.ExecRequest{App: *app, Args: fs.Args()}
	if x.process != "" || x.child {
		return x.run(args, req)
	}
	return enterExec(req)
}

// enterExec runs req through the pod agent with enter's stdio (a pty of the
// guest's when stdin is a terminal) and ends with its exit code. The signals
// enter gets go to the command, as the default flavor's enter passes them
// (SIGTERM stays SIGTERM, never a hangup): the guest's RunCmd delivers them,
// and kills what the command left behind once it ends.
func enterExec(req agent.ExecRequest) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, enterSignals...)
	defer signal.Stop(sigs)
	stdio := agent.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Signals: sigs}
	if t, err := agent.MakeRaw(os.Stdin); err == nil {
		defer t.Restore()
		req.TTY, req.Window, stdio.Resize = true, t.Size(), t.Resize()
		if term := os.Getenv("TERM"); term != "" {
			req.Env = append(req.Env, "TERM="+term)
		}
	}
	code, err := agent.NewClient(agent.SocketFile).Exec(context.Background(), req, stdio)
	if err != nil {
		return err
	}
	return codeError(code)
}

// enterSignals are the signals enter passes to the entered command (those
// of the default flavor's enter).
var enterSignals = []os.Signal{unix.SIGTERM, unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

// supervisorPid is the pid of container id's supervisor (OCI mode) while it
// runs: the pid file's process, if it is this binary's oci-run of id working
// in this pod directory; else 0.
func supervisorPid(id string) int {
	b, err := os.ReadFile(abi.PIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	want := []byte("\x00oci-run\x00")
	if err != nil || !bytes.Contains(cmdline, want) || !bytes.HasSuffix(cmdline, []byte("\x00"+id+"\x00")) {
		return 0
	}
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	here, _ := os.Getwd()
	if cwd != here {
		return 0
	}
	return pid
}
