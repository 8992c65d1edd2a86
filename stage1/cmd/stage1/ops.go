package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/container"
	"github.com/skiff-project/skiff/stage1/podnet"
)

// stopMain: stop [--force] UUID. Asks the pod's systemd to halt (apps get
// SIGTERM, then SIGKILL after their stop timeout); --force kills the pod now.
// It returns once the pod's run has ended (abi.WaitRunEnded).
func stopMain(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	force := fs.Bool("force", false, "kill the pod at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// (run may not have made the stage1 directory yet: the pod is started
	// from the moment stage0 marks it running.)
	if err := os.MkdirAll(abi.Stage1Dir, 0o755); err != nil {
		return fmt.Errorf("mark the pod as stopping: %w", err)
	}
	// The markers first: a run that has not started its pod yet (no pid
	// file) halts or kills it as soon as it has, so a stop is never lost.
	if *force {
		if err := os.WriteFile(s1Kill, nil, 0o644); err != nil {
			return fmt.Errorf("mark the pod as killed: %w", err)
		}
	}
	if err := os.WriteFile(s1Stop, nil, 0o644); err != nil {
		return fmt.Errorf("mark the pod as stopping: %w", err)
	}
	var b []byte
	var err error
	for deadline := time.Now().Add(stopStartWait); ; time.Sleep(20 * time.Millisecond) {
		if b, err = os.ReadFile(abi.PIDFile); err == nil || time.Now().After(deadline) {
			break
		}
		if _, err := os.Stat(abi.PodExitFile); err == nil {
			return nil // it has ended already
		}
	}
	if err != nil {
		return fmt.Errorf("the pod has not started within %s; it stops as soon as it does", stopStartWait)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pod pid file holds %q", strings.TrimSpace(string(b)))
	}
	if *force {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill pod init %d: %w", pid, err)
		}
		abi.WaitRunEnded(runEndWait)
		return nil
	}
	haltPod(pid, podHaltGrace(), initGone(pid)) // returns once the pod's init is gone
	abi.WaitRunEnded(runEndWait)
	return nil
}

// initGone returns a channel closed once the process pid (the pod's init, not
// our child) has exited, seen through its pidfd; nil when there is no pidfd
// (haltPod then notices the end at its next resend of the signal).
func initGone(pid int) <-chan struct{} {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	gone := make(chan struct{})
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && n == 1 {
				close(gone) // readable: the process has exited
			}
			return // else haltPod goes on by its resends
		}
	}()
	return gone
}

// runEndWait bounds how long stop waits, once the pod's init is gone, for its
// run to end (its cleanup: the sandbox, the network, the exit record).
const runEndWait = 10 * time.Second

// stopStartWait bounds how long stop waits for a starting pod's pid.
const stopStartWait = 30 * time.Second

// gcMain: gc UUID. Removes what the pod left on the host (processes, cgroups,
// libcontainer state), also after a crash of run. Safe to run twice.
func gcMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: gc UUID")
	}
	// Right after run was killed its pod may still be dying (the parent-death
	// signal is asynchronous), and a run killed while libcontainer made the
	// cgroups left some that its state does not record: kill what is left
	// through the pod's cgroups, wait a bounded time, and remove them in
	// every hierarchy first. Whatever stays keeps the pod in garbage.
	var errCg []error
	for _, cg := range podCgroupsToSweep(args[0]) {
		errCg = append(errCg, sweepCgroup(cg, sweepWait))
	}
	errDestroy := container.Destroy(abs(s1State), containerID(args[0]))
	for deadline := time.Now().Add(5 * time.Second); errDestroy != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		errDestroy = container.Destroy(abs(s1State), containerID(args[0]))
	}
	errNet := podnet.TeardownDir(".")
	return errors.Join(errors.Join(errCg...), errDestroy, errNet, removeUsersRootfs(args[0]), removeOCICgroup())
}

// enterMain: enter --pid=P --app=NAME -- CMD... Runs CMD inside the app, in the
// pod's namespaces and the app's cgroups, through app-exec (which gives it the
// app's root and isolation, as for the app itself).
func enterMain(args []string) error {
	fs := flag.NewFlagSet("enter", flag.ContinueOnError)
	fs.Int("pid", 0, "the pod's pid (from the pid file)")
	app := fs.String("app", "", "the app to enter")
	process := fs.String("process", "", "v2: a file holding an OCI process (JSON) to run instead of CMD")
	detach := fs.Bool("detach", false, "v2: return once the process runs")
	pidFile := fs.String("pid-file", "", "v2: write the process's host pid there")
	consoleSocket := fs.String("console-socket", "", "v2: send the master of the process's pty there")
	if err := fs.Parse(args); err != nil {
		return err
	}
	defer warmCgroupMoves(runOpts{}, warmEnter)() // the process's moves (cgroupwarm.go)
	var m abi.PodManifest
	if err := abi.ReadJSON(abi.PodManifestFile, &m); err != nil {
		return err
	}
	if *app == "" && len(m.Apps) == 1 {
		*app = m.Apps[0].Name
	}
	if !hasApp(&m, *app) {
		return fmt.Errorf("pod %s has no app %q; name one with --app", m.UUID, *app)
	}
	var spec specs.Spec
	if err := abi.ReadJSON(filepath.Join(abi.AppsDir, *app, abi.AppSpecFile), &spec); err != nil {
		return fmt.Errorf("app %s: read its spec: %w", *app, err)
	}
	// app-exec then joins the app's cgroup2 group, gives itself the app's
	// OOM score and root, and isolates itself as the app.
	cmd := append([]string{"/usr/lib/skiff/app-exec", "--inherit", *app, "--"}, fs.Args()...)
	o := container.ExecOpts{Detach: *detach, PidFile: *pidFile}
	if _, err := os.Stat(s1OCICgroup); err != nil {
		// v1 limits live in per-app cgroups that run made; in OCI mode the
		// bundle's resources are the whole sandbox's, and there are none.
		o.SubCgroups = enterCgroups(*app, &spec)
	}
	if *process != "" {
		raw, err := os.ReadFile(*process) // the host caller's file, never the pod's
		if err != nil {
			return fmt.Errorf("--process: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("--process %s: not an OCI process: %w", *process, err)
		}
		compact, _ := json.Marshal(p)
		cmd = []string{"/usr/lib/skiff/app-exec", "--inherit", "--process=" + string(compact), *app}
		if p.Terminal {
			if *consoleSocket == "" {
				return fmt.Errorf("--process %s asks for a terminal: pass --console-socket", *process)
			}
			c, err := net.Dial("unix", *consoleSocket)
			if err != nil {
				return fmt.Errorf("console socket %s: %w", *consoleSocket, err)
			}
			defer c.Close()
			f, err := c.(*net.UnixConn).File()
			if err != nil {
				return err
			}
			defer f.Close()
			// app-exec makes the pty on the app's devpts (its /dev/pts/N).
			o.ExtraFiles = []*os.File{f}
			cmd = []string{"/usr/lib/skiff/app-exec", "--inherit", "--process=" + string(compact), "--console-fd=3", *app}
		}
	}
	var console *enterConsole
	if *process == "" && term.IsTerminal(0) {
		c, peer, err := newEnterConsole()
		if err != nil {
			return fmt.Errorf("console for enter: %w", err)
		}
		defer peer.Close()
		console = c
		o.ExtraFiles = []*os.File{peer}
		cmd = append([]string{"/usr/lib/skiff/app-exec", "--inherit", "--console-fd=3", "--env=" + termEnv(), *app, "--"}, fs.Args()...)
		defer console.finish()
	}
	var sigs *enterSignals
	if !*detach {
		if *process == "" {
			// enter's command, and all it started, end with enter, even
			// killed (SIGKILL): app-exec's reaper (reaper.go) kills them
			// once the pipe whose write end only enter holds ends.
			guard, held, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("enter: %w", err)
			}
			defer held.Close()
			defer guard.Close()
			o.ExtraFiles = append(o.ExtraFiles, guard)
			reapFD := "--reap-fd=" + strconv.Itoa(2+len(o.ExtraFiles))
			cmd = append(cmd[:2:2], append([]string{reapFD}, cmd[2:]...)...)
		}
		sigs = catchEnterSignals()
		o.Started = func(pid int, send func(os.Signal) error) {
			if console != nil {
				_ = o.ExtraFiles[0].Close() // the process has its copy; EOF when it is gone
				console.start()
			}
			sigs.started(pid, send)
		}
	}
	execWith := container.ExecWith
	if appInitPod() {
		execWith = ociHostPIDExec // the app is the init (oci_hostpid.go)
	}
	code, err := execWith(abs(s1State), containerID(m.UUID), cmd, o)
	if sigs != nil {
		sigs.stop()
	}
	if err != nil {
		return err
	}
	return codeError(code)
}
