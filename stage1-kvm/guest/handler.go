package guest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1-kvm/agent"
	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/units"
)

// Signals of the pod's systemd (systemd(1)); glibc, which systemd is built
// with, puts SIGRTMIN at 34. SIGRTMIN+4 is poweroff: the apps are stopped
// (SIGTERM, SIGKILL after their stop timeout), then the VM powers off.
var sigPoweroff = unix.Signal(34 + 4)

// serve answers the host's requests on the agent port (package agent).
func (a *podAgent) serve() error {
	port, err := agent.OpenPort(agent.PortName, 3*time.Second)
	if err != nil {
		return err
	}
	return agent.Serve(port, a)
}

func (a *podAgent) app(name string) error {
	for _, app := range a.cfg.Apps {
		if app.Name == name {
			return nil
		}
	}
	return fmt.Errorf("pod has no app %q", name)
}

// Exec runs a command inside an app (enter) through app-exec, as the app's
// user with its capabilities, seccomp filter and no_new_privs, in the app's
// cgroup while its unit runs.
func (a *podAgent) Exec(ctx context.Context, req agent.ExecRequest, stdio agent.Stdio) (int, error) {
	if err := a.app(req.App); err != nil {
		return abi.ExitSkiffFailure, err
	}
	args := []string{units.AppExecPath, "--inherit"}
	for _, e := range req.Env {
		args = append(args, "--env="+e)
	}
	if len(req.Process) > 0 {
		args = append(args, "--process="+string(req.Process), req.App)
	} else {
		args = append(append(args, req.App, "--"), req.Args...)
	}
	opts := agent.CmdOptions{KillAfterHangup: agent.DefaultKillAfterSignal}
	var extra []*os.File
	if len(req.Process) == 0 {
		// enter's command, and all it started, end with the stream that
		// started it, even one that left the command's process group or
		// session: app-exec's reaper (stage1/appexec/reaper.go) kills them
		// once the pipe whose write end only this exec holds ends, which
		// RunCmd closes on a hangup (and to kill).
		guard, held, err := os.Pipe()
		if err != nil {
			return abi.ExitSkiffFailure, fmt.Errorf("exec: %w", err)
		}
		defer guard.Close()
		opts.Reaper = held
		extra = []*os.File{guard}
		args = append(args[:2:2], append([]string{"--reap-fd=3"}, args[2:]...)...)
	}
	if req.TTY {
		// app-exec makes the pty on the app's devpts, so that it is the
		// app's /dev/pts/N (ttyname, tty(1)), and sends its master here.
		c, err := agent.NewConsole()
		if err != nil {
			return abi.ExitSkiffFailure, fmt.Errorf("exec: %w", err)
		}
		defer c.Close()
		opts.Console = c
		extra = append(extra, c.Peer)
		args = append(args[:2:2], append([]string{"--console-fd=" + strconv.Itoa(2+len(extra))}, args[2:]...)...)
	}
	cmd := exec.Command(units.AppExecPath)
	cmd.Args = args
	cmd.Env = []string{}
	cmd.ExtraFiles = extra
	cg, err := os.Open(filepath.Join("/sys/fs/cgroup/system.slice", units.ServiceName(req.App)))
	if err == nil {
		defer cg.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	// Nothing outlives the stream that started it: a host enter that ends
	// without the exit frame (SIGKILLed, its relay gone) hangs the command
	// up; the reaper kills all it started at once, and without one (an OCI
	// exec) its group is killed once it exits or the wait is over (a
	// command that ignores SIGHUP). No exec stays without its stream: a
	// detached OCI exec keeps its host relay, whose end is the process's.
	return agent.RunCmd(ctx, cmd, req, stdio, opts)
}

// Signal sends sig to the main process of app's unit (every app's when app
// is empty), through the pod's systemd.
func (a *podAgent) Signal(ctx context.Context, app string, sig syscall.Signal) error {
	unit := units.ServiceName("*")
	if app != "" {
		if err := a.app(app); err != nil {
			return err
		}
		unit = units.ServiceName(app)
	}
	out, err := exec.CommandContext(ctx, "/usr/bin/systemctl", "kill", "--kill-whom=main",
		fmt.Sprintf("--signal=%d", int(sig)), unit).CombinedOutput()
	if err != nil {
		return fmt.Errorf("signal %s: %v: %s", unit, err, out)
	}
	return nil
}

// Stop powers the pod off: through systemd, which stops the apps first, or
// at once when forced.
func (a *podAgent) Stop(ctx context.Context, req agent.StopRequest) error {
	if req.Force {
		unix.Sync()
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	return unix.Kill(1, sigPoweroff)
}

func (a *podAgent) tty(app string) bool {
	for _, x := range a.cfg.Apps {
		if x.Name == app {
			return x.TTY
		}
	}
	return false
}

// Stdin feeds an interactive app's stdin (or its terminal, which follows the
// host's window size) until the host's stdin ends.
func (a *podAgent) Stdin(ctx context.Context, app string, stdio agent.Stdio) error {
	r := stdio.Stdin
	if err := a.app(app); err != nil {
		return err
	}
	w := a.stdin[app]
	if w == nil {
		return fmt.Errorf("app %s does not read the host's stdin (run with --interactive)", app)
	}
	if a.tty(app) && stdio.Resize != nil {
		go func() {
			for {
				select {
				case ws := <-stdio.Resize:
					_ = agent.SetWinsize(w, ws)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	_, err := io.Copy(w, r)
	if !a.tty(app) { // a terminal stays: its EOF is a character the host sends
		w.Close()
	}
	return err
}
