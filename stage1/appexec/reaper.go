package appexec

// enter's reaper (app-exec --reap-fd=N): nothing that enter's command
// started outlives enter, even SIGKILLed.
//
// stage1 enter cannot act once SIGKILLed, and a parent-death signal of the
// command's own would end the command but not what it started (orphans go to
// the pod's systemd), is cleared by its switch of credentials, and could be
// refused by the app's seccomp filter. So app-exec first becomes a reaper
// between enter and the command, before anything of the app's isolation: a
// child subreaper (the command's orphans come to it) that holds the read end
// of a pipe whose write end only enter holds, and that SIGKILLs its children,
// until it has none, once that pipe ends (enter has ended, however).
// Otherwise it starts app-exec again (its arguments less --reap-fd) as the
// leader of a session of its own, as enter's process has always been,
// forwards every signal it gets to it (SIGINT, SIGQUIT and SIGHUP to its
// process group, as a terminal does: enter sends them to the reaper's
// group), reaps the orphans that come to it and ends with the command: with
// its code, or 128+N for signal N. What the command left behind when it
// ends by itself stays in the pod, as what podman exec started does; once
// told to end (SIGTERM, SIGHUP or SIGINT), what it leaves is killed.

import (
	"errors"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// reap is app-exec --reap-fd=guard: args are its other arguments. With
// ctty, its stdin is a terminal that becomes the controlling terminal of
// its child's session, not of the reaper's (the kvm guest's pty: job
// control and the terminal's signals are the command's session's). It
// returns only on failure.
func reap(args []string, guard int, ctty bool) error {
	// Not readable through /proc by the pod's processes (it is the pod's
	// root, with enter's stdio, before any isolation).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fail(abi.ExitSkiffFailure, "app-exec: not dumpable: %v", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(abi.ExitSkiffFailure, "app-exec: child subreaper: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(guard), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fail(abi.ExitSkiffFailure, "app-exec: --reap-fd=%d: %v", guard, err)
	}
	ended := make(chan struct{}) // enter has ended
	go func() {
		defer close(ended)
		var b [1]byte
		for {
			if _, err := unix.Read(guard, b[:]); !errors.Is(err, unix.EINTR) {
				return // its end (enter, the only writer, never writes)
			}
		}
	}()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	extra, err := inheritedFDs()
	if err != nil {
		return fail(abi.ExitSkiffFailure, "app-exec: %v", err)
	}
	cmd := &osexec.Cmd{Path: AppExecPath, Args: append([]string{"app-exec"}, args...), Env: os.Environ(),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: ctty, Ctty: 0}}
	if err := cmd.Start(); err != nil {
		return fail(abi.ExitSkiffFailure, "app-exec: start enter's command: %v", err)
	}
	for _, f := range extra {
		if f != nil {
			f.Close() // enter's console socket: its end is the command's
		}
	}
	if null, err := os.Open(os.DevNull); err == nil { // the input is the command's
		_ = unix.Dup3(int(null.Fd()), 0, 0)
		null.Close()
	}
	pid := cmd.Process.Pid
	// The only reaper of this process's children: wait4(-1) (the command's
	// orphans come here), never cmd.Wait.
	exited := make(chan unix.WaitStatus, 1)
	none := make(chan struct{}) // no child left: none can come any more
	go func() {
		defer close(none)
		for {
			var ws unix.WaitStatus
			p, err := unix.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			if p == pid {
				exited <- ws
			}
		}
	}()
	told := false // to end (SIGTERM, SIGHUP, SIGINT): what it leaves goes too
	for {
		select {
		case ws := <-exited:
			// The command may end because enter did (the hangup of
			// enter's terminal) before the read of the guard returns:
			// what it started goes then too.
			if told || guardEnded(guard) {
				killChildren(none)
			}
			if ws.Signaled() {
				os.Exit(128 + int(ws.Signal()))
			}
			os.Exit(ws.ExitStatus())
		case <-ended:
			killChildren(none)
			os.Exit(128 + int(unix.SIGKILL))
		case s := <-sigs:
			sig, _ := s.(unix.Signal)
			told = told || sig == unix.SIGTERM || sig == unix.SIGHUP || sig == unix.SIGINT
			switch {
			case sig == unix.SIGCHLD || sig == unix.SIGURG: // its own, and Go's preemption
			case sig == unix.SIGINT || sig == unix.SIGQUIT || sig == unix.SIGHUP:
				if pg, err := unix.Getpgid(pid); err == nil && pg == pid && unix.Kill(-pid, sig) == nil {
					break
				}
				_ = unix.Kill(pid, sig)
			default:
				_ = unix.Kill(pid, sig)
			}
		}
	}
}

// guardEnded says, without waiting, whether the guard pipe has no writer
// left: enter has ended.
func guardEnded(guard int) bool {
	fds := []unix.PollFd{{Fd: int32(guard), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLIN) != 0
}

// killChildren SIGKILLs this process's children until it has none (none is
// closed): the orphans of each one killed come to this subreaper and are
// killed in turn. A child's pid is its own until it is reaped. One that
// cannot die yet (a frozen cgroup) is tried again less and less often.
func killChildren(none <-chan struct{}) {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		for _, c := range children() {
			_ = unix.Kill(c, unix.SIGKILL)
		}
		select {
		case <-none:
			return
		case <-time.After(wait):
		}
	}
}

// children lists this process's children (those of each of its threads), in
// the pod's procfs (the stage1's /proc, of this process's pid namespace).
func children() []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				out = append(out, pid)
			}
		}
	}
	return out
}
