package abi

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WaitRunEnded waits, at most limit, for the pod's run entrypoint to end,
// and reports whether it has: run holds the pod lock (EnvLockFD, stage0's
// flock on the pod directory) for the pod's life and releases it as it
// exits, after its cleanup and the pod's exit record. Stop entrypoints use it
// to return with the pod exited, as `skiff list`, `rm` and `gc` see it. It
// runs in the pod directory, as every entrypoint does; the shared lock it may
// take goes with its process.
func WaitRunEnded(limit time.Duration) bool {
	f, err := os.Open(".")
	if err != nil {
		return false
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for unix.Flock(int(f.Fd()), unix.LOCK_SH) == unix.EINTR {
		}
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false // f stays open (and the goroutine blocked) until the process ends
	}
}
