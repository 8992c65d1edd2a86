package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// The pod's first process, libcontainer's init (and then pod-init for
// oci-create), execs from the main thread (its main goroutine stays there,
// as in runc's init): an exec from another thread leaves the group's leader
// a zombie until the kernel has moved its pid to the exec'ing thread
// (skiff-oci's state and kill would see an ended container right after
// start), and a parent-death signal is the thread's that set it.
func init() {
	if len(os.Args) > 1 && (os.Args[1] == "init" || os.Args[1] == "pod-init") || filepath.Base(os.Args[0]) == "pod-init" {
		runtime.LockOSThread()
	}
}

// The default pod's first process is its systemd, exec'd by libcontainer's
// init: this binary, re-exec'd as "init" by stage1's run process, whose
// argv[0] it keeps. The pod must die with the run process, and
// libcontainer's own parent-death signal does not reach the init (it is set
// on the process libcontainer starts, which forks the init). So the init sets
// one itself before libcontainer's code runs; libcontainer reads it at its
// start, sets it again after changing credentials (which clear it), and the
// exec of systemd keeps it. (A pod-init exec'd between the two used to set
// it: one more start of this 9 MB binary on every run.) The containers of
// oci-create, which outlive their creator, get none.
func initDeathSignal() error {
	if filepath.Base(os.Args[0]) != abi.EntrypointRun {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pod init: set parent-death signal: %w", err)
	}
	return nil
}

// podInitMain is the first process of an oci-create container:
// pod-init --oci=N[:console] CMD... (the pod's systemd; oci.go), or
// pod-init --oci-app=N[:console] APP (the app as the container's init;
// oci_hostpid.go).
func podInitMain(args []string) error {
	if len(args) > 0 {
		if fds, ok := strings.CutPrefix(args[0], "--oci-app="); ok {
			return podInitOCIApp(fds, args[1:]) // oci_hostpid.go
		}
		if fds, ok := strings.CutPrefix(args[0], "--oci="); ok && len(args) > 1 {
			return podInitOCI(fds, args[1:])
		}
	}
	return fmt.Errorf("usage: pod-init --oci=N[:console] CMD... | pod-init --oci-app=N[:console] APP")
}
