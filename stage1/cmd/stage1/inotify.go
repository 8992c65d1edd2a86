package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The pod's systemd needs inotify instances to start, and the kernel charges
// them to the user who owns the pod's user namespace: host root, with or
// without --private-users, under fs.inotify.max_user_instances (128 by
// default, for every process of root's together). When none is left, systemd
// ends at once (255) and says nothing: its log goes nowhere without --debug.

// podInotifyInstances is how many inotify instances each pod's systemd (252)
// holds for its life: the cgroup.events watch (without it, it does not
// start), the /etc/localtime watch (on /etc while there is no
// /etc/localtime) and libmount's watch of /run/mount/utab.
const podInotifyInstances = 3

const maxInotifyInstances = "/proc/sys/fs/inotify/max_user_instances"

// errNoInotify is the pod's systemd ending for want of an inotify instance.
var errNoInotify = errors.New("no inotify instance is left for root")

// noInotifyBeforeStart explains why the pod's init ended, when it ended on
// its own, failing, before any app started, and root has no inotify instance
// left now (this process is host root: its inotify_init1 is charged where
// systemd's was). It returns nil for any other end.
func (r *runningPod) noInotifyBeforeStart(state *os.ProcessState) error {
	if state == nil || state.Success() || r.ready.anyStarted() || r.haltRequested() {
		return nil
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return nil
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if !errors.Is(err, unix.EMFILE) {
		return nil
	}
	limit, suggest := "?", 1024
	if b, err := os.ReadFile(maxInotifyInstances); err == nil {
		limit = strings.TrimSpace(string(b))
		if n, err := strconv.Atoi(limit); err == nil && 2*n > suggest {
			suggest = 2 * n
		}
	}
	return fmt.Errorf("its systemd could not start: %w (fs.inotify.max_user_instances is %s; each pod holds %d while it runs); raise the limit: 'sysctl -w fs.inotify.max_user_instances=%d', and put that in a file in /etc/sysctl.d to keep it",
		errNoInotify, limit, podInotifyInstances, suggest)
}

// anyStarted tells whether any app of the pod has started.
func (r *readiness) anyStarted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.started) > 0
}
