package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// haltGrace is how long a halting pod gets before it is killed: the apps'
// stop timeout (units' TimeoutStopSec) plus systemd's own way down.
const haltGrace = 20 * time.Second

// haltPod asks the pod's systemd (pid) to halt, and keeps asking until it is
// gone: a signal that arrives before systemd has installed its handlers is
// dropped (the init of a PID namespace ignores signals it does not handle), so
// one signal sent right after the pod started could be lost. After grace it
// kills the pod. gone, if not nil, closes when the init has been reaped.
func haltPod(pid int, grace time.Duration, gone <-chan struct{}) {
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := unix.Kill(pid, sigHalt); err == unix.ESRCH {
			return
		}
		select {
		case <-gone:
			return
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			_ = unix.Kill(pid, unix.SIGKILL)
			return
		}
	}
}
