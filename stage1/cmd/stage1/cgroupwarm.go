package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/lockfile"
)

// Moving a process to another cgroup (a write to a cgroup.procs file, v1 or
// v2) takes the kernel's one cgroup_threadgroup_rwsem for writing, and the
// first such write after a quiet moment waits for an RCU grace period while
// the semaphore leaves its fast mode: 8-15 ms on the machines skiff is
// measured on, where the same write right after another takes 0.1 ms (the
// semaphore stays in its slow mode for a grace period after the last writer).
// A pod's start makes three such moves one after another: libcontainer puts
// the pod's init in the pod's cgroup, the pod's systemd moves itself into
// init.scope, and then the app into its service's cgroup; each came after
// enough of a pause to pay the grace period again (bench/README.md, run-true).
//
// warmCgroupMoves keeps the semaphore in its slow mode while the pod starts:
// every warmPeriod it writes this process's own pid to its own cgroup's
// cgroup.procs, a move to where it already is (the kernel finds nothing to
// migrate). The first write pays the grace period here, off the pod's path;
// the pod's own moves then find the semaphore ready. It stops when stop is
// called, after max, or at the first write that fails (a read-only
// /sys/fs/cgroup, a cgroup removed under us): it is an optimization only.
// One process at a time writes (warmLock); the others wait their turn. enter
// uses it too: its process joins the pod's cgroups, then app-exec the app's.
func warmCgroupMoves(o runOpts, max time.Duration) (stop func()) {
	return warmCounting(o, max, nil)
}

// warmCounting is warmCgroupMoves counting its writes in writes, if not nil
// (for tests).
func warmCounting(o runOpts, max time.Duration, writes *atomic.Int64) (stop func()) {
	self, _ := os.ReadFile("/proc/self/cgroup")
	var f *os.File
	for _, p := range ownCgroupProcs(self) {
		var err error
		if f, err = os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			break
		}
	}
	if f == nil {
		o.Debugf("cgroup moves not kept warm: no cgroup.procs of our own to write")
		return func() {}
	}
	lock := openWarmLock()
	done := make(chan struct{})
	var once sync.Once
	go func() {
		defer f.Close()
		deadline := time.NewTimer(max)
		defer deadline.Stop()
		if lock != nil {
			defer lock.Close()
			// Blocks while another process keeps the semaphore warm (for
			// every pod), until it stops; then this one takes over, if it
			// still has to.
			if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-deadline.C:
				return
			default:
			}
		}
		pid := []byte(strconv.Itoa(os.Getpid()))
		tick := time.NewTicker(warmPeriod)
		defer tick.Stop()
		for {
			if _, err := f.Write(pid); err != nil {
				o.Debugf("cgroup moves no longer kept warm: %v", err)
				return
			}
			if writes != nil {
				writes.Add(1)
			}
			select {
			case <-tick.C:
			case <-done:
				return
			case <-deadline.C:
				return
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

const (
	// warmPeriod is well within the grace period the semaphore stays in
	// its slow mode after a write (a write 10 ms after another was still
	// fast, one 20 ms after was not).
	warmPeriod = 2 * time.Millisecond
	// warmAfterReady is how long the writes go on once the pod is ready:
	// an app that ends soon after it started (a one-shot job) has
	// app-exited moved into its service's cgroup, and the pod's systemd
	// more of its own, then.
	warmAfterReady = 250 * time.Millisecond
	// warmMax bounds the writes when the pod takes long to start.
	warmMax = 2 * time.Second
	// warmEnter bounds them for enter, whose process's moves come right
	// after its start.
	warmEnter = 250 * time.Millisecond
)

// warmLock is held by the one process that keeps the semaphore warm: it is
// the whole kernel's, so one writer serves every pod starting at once, and
// fifty writers (fifty pods started together) made each other and the pods'
// own forks wait (start-50 1.3x slower).
var warmLock = "/run/skiff/cgroup-warm.lock"

// openWarmLock opens warmLock, or returns nil (the writes then go on
// without it).
func openWarmLock() *os.File {
	// 0711 as for the other locks in /run/skiff: a pod with private users
	// walks through it.
	if err := os.MkdirAll(filepath.Dir(warmLock), 0o711); err != nil {
		return nil
	}
	f, err := lockfile.Open(warmLock)
	if err != nil {
		return nil
	}
	return f
}

// ownCgroupProcs returns the cgroup.procs files of this process's own cgroup
// that a write may go to, from /proc/self/cgroup: in the cgroup2 tree (at
// /sys/fs/cgroup on a pure cgroup2 host, /sys/fs/cgroup/unified on a hybrid
// one) first, then in each v1 hierarchy.
func ownCgroupProcs(selfCgroup []byte) []string {
	var v2, v1 []string
	sc := bufio.NewScanner(bytes.NewReader(selfCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || strings.Contains(parts[2], "/..") {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = append(v2, filepath.Join("/sys/fs/cgroup", parts[2], "cgroup.procs"),
				filepath.Join("/sys/fs/cgroup/unified", parts[2], "cgroup.procs"))
		case parts[1] != "" && !strings.HasPrefix(parts[1], "name="):
			v1 = append(v1, filepath.Join("/sys/fs/cgroup", parts[1], parts[2], "cgroup.procs"))
		}
	}
	return append(v2, v1...)
}
