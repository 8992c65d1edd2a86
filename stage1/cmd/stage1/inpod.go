package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// podInitMain is the pod's first process: pod-init CMD... makes the pod die
// with stage1's run process (SIGKILL as parent-death signal, which survives the
// exec) and execs CMD, the pod's systemd. libcontainer's own parent-death signal
// does not reach the init it forks.
func podInitMain(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: pod-init [--oci=N[:console]] CMD... | pod-init --oci-app=N[:console] APP")
	}
	if fds, ok := strings.CutPrefix(args[0], "--oci-app="); ok {
		return podInitOCIApp(fds, args[1:]) // oci_hostpid.go
	}
	if fds, ok := strings.CutPrefix(args[0], "--oci="); ok {
		if len(args) < 2 {
			return fmt.Errorf("usage: pod-init [--oci=N[:console]] CMD...")
		}
		return podInitOCI(fds, args[1:])
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pod-init: set parent-death signal: %w", err)
	}
	return syscall.Exec(args[0], args, os.Environ())
}
