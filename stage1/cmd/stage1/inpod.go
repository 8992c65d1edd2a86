package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The pod's first process, libcontainer's init and then pod-init, execs
// from the main thread (its main goroutine stays there, as in runc's init):
// an exec from another thread leaves the group's leader a zombie until the
// kernel has moved its pid to the exec'ing thread (skiff-oci's state and
// kill would see an ended container right after start), and pod-init's
// parent-death signal is the thread's that set it.
func init() {
	if len(os.Args) > 1 && (os.Args[1] == "init" || os.Args[1] == "pod-init") || filepath.Base(os.Args[0]) == "pod-init" {
		runtime.LockOSThread()
	}
}

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
