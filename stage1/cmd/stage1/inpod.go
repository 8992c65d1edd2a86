package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
	"github.com/skiff-project/skiff/stage1/appexec"
)

// appExecMain is the ExecStart of an app's service (and the command enter runs
// in the pod): app-exec [--inherit] APP [-- CMD...].
func appExecMain(args []string) error {
	fs := flag.NewFlagSet("app-exec", flag.ContinueOnError)
	inherit := fs.Bool("inherit", false, "keep this process's stdio instead of asking stage1 for the app's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("usage: app-exec [--inherit] APP [-- CMD...]")
	}
	cmd := fs.Args()[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	return appexec.Exec(fs.Arg(0), cmd, *inherit)
}

// podInitMain is the pod's first process: pod-init CMD... makes the pod die
// with stage1's run process (SIGKILL as parent-death signal, which survives the
// exec) and execs CMD, the pod's systemd. libcontainer's own parent-death signal
// does not reach the init it forks.
func podInitMain(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: pod-init CMD...")
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pod-init: set parent-death signal: %w", err)
	}
	return syscall.Exec(args[0], args, os.Environ())
}

// appExitedMain is the ExecStopPost of an app's service: it records the app's
// exit and, in a pod of several apps, ends the pod when the last one is done.
func appExitedMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: app-exited APP")
	}
	if _, err := appexec.RecordExit(args[0], os.Getenv, func() abi.AppExit {
		return abi.AppExit{ExitedAt: time.Now().UTC()}
	}); err != nil {
		return err
	}
	done, code, apps, err := appexec.AllExited()
	if err != nil || !done || apps == 1 {
		return err // one app: its unit's SuccessAction/FailureAction ends the pod
	}
	return exec.Command("/usr/bin/systemctl", "--no-block", "exit", strconv.Itoa(code)).Run()
}
