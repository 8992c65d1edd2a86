package appexec

import (
	"time"

	"golang.org/x/sys/unix"
)

// EndAll is for the init of a PID namespace at its end (the pod's
// systemd-shutdown, the microVM's): it sends sig to every other process of
// the namespace (kill(-1) reaches those of nested namespaces too, and those
// that joined it from outside, as skiff enter's commands do), SIGCONT as
// well unless sig is SIGKILL (a stopped process must run to end), and reaps
// until none is left or timeout has passed. Orphans are init's children, so
// each one's end is seen here.
//
// In a VM, init's namespace is the kernel's first, whose threads always
// answer kill(-1, 0); there (vm) the end is that init has no child left:
// every process of the guest descends from it, and an orphan comes to it.
func EndAll(sig unix.Signal, timeout time.Duration, vm bool) {
	if unix.Kill(-1, sig) == unix.ESRCH {
		return // nobody left
	}
	if sig != unix.SIGKILL {
		_ = unix.Kill(-1, unix.SIGCONT)
	}
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		noChild := false
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if err == unix.ECHILD {
				noChild = true
			}
			if pid <= 0 {
				break
			}
		}
		if (vm && noChild) || (!vm && unix.Kill(-1, 0) == unix.ESRCH) || time.Now().After(deadline) {
			return
		}
		time.Sleep(wait)
	}
}
