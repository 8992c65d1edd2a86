//go:build functional

package tests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const maxInotifyInstances = "/proc/sys/fs/inotify/max_user_instances"

// inotifyHold holds every inotify instance root has left, and takes each one
// another process frees until released, so that no pod started meanwhile gets
// one. The kernel counts instances per user for the whole host: hold them for
// as short a time as possible, other root processes cannot get any either.
type inotifyHold struct {
	mu   sync.Mutex
	fds  []int
	stop chan struct{}
	done chan struct{}
}

// holdInotify takes root's inotify instances up to the limit; it skips the
// test when the limit is too high to reach.
func holdInotify(t *testing.T) *inotifyHold {
	t.Helper()
	h := &inotifyHold{stop: make(chan struct{}), done: make(chan struct{})}
	if !h.take(8192) {
		h.close()
		t.Skipf("fs.inotify.max_user_instances lets root open more than %d inotify instances: too many to hold for this test", len(h.fds))
	}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.stop:
				return
			case <-time.After(2 * time.Millisecond):
				h.take(1 << 20)
			}
		}
	}()
	t.Cleanup(h.release)
	return h
}

// take opens instances until the kernel refuses one (true) or up to max more.
func (h *inotifyHold) take(max int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for range max {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if errors.Is(err, unix.EMFILE) {
			return true
		}
		if err != nil {
			return false
		}
		h.fds = append(h.fds, fd)
	}
	return false
}

func (h *inotifyHold) release() {
	select {
	case <-h.stop:
		return
	default:
	}
	close(h.stop)
	<-h.done
	h.close()
}

func (h *inotifyHold) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fd := range h.fds {
		unix.Close(fd)
	}
	h.fds = nil
}

// A pod whose systemd finds no inotify instance left for root (the host's
// fs.inotify.max_user_instances reached: with the default 128, at about the
// 40th pod) fails with exit 125 and one line that names the pod, the limit
// and the fix, and leaves nothing behind; skiff does not raise the limit.
// Before, systemd ended with 255 and nobody said why.
func TestRunWithoutInotifyInstanceSaysWhy(t *testing.T) {
	e := newEnv(t)
	if e.flavor() != "default" {
		t.Skip("a kvm pod's systemd takes its inotify instances in the guest's kernel")
	}
	// Import first, so that only the pod's start runs while root has no
	// instance left.
	e.ok("--insecure-options=image", "fetch", e.image("busybox"))
	limit, err := os.ReadFile(maxInotifyInstances)
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"root", nil},
		// The pod's own user namespace is owned by root: still root's.
		{"private-users", []string{"--private-users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uf := filepath.Join(t.TempDir(), "uuid")
			args := e.runArgs(append(append([]string{"--net=none", "--pull-policy=never", "--uuid-file-save=" + uf}, tc.extra...),
				e.image("busybox"), "--", "/bin/echo", "the app ran")...)
			h := holdInotify(t)
			r := e.skiff(args...)
			h.release()
			t.Logf("stderr: %s", strings.TrimSpace(r.stderr))
			if r.code != 125 {
				t.Fatalf("run with no inotify instance left: exit %d, want 125\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "the app ran") {
				t.Fatalf("the app ran: %q", r.stdout)
			}
			uuid, _ := os.ReadFile(uf)
			for _, w := range []string{strings.TrimSpace(string(uuid)), "inotify", "fs.inotify.max_user_instances is " + strings.TrimSpace(string(limit)),
				"sysctl -w fs.inotify.max_user_instances=", "/etc/sysctl.d"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not mention %q", r.stderr, w)
				}
			}
			checkOneErrorLine(t, r)
			if now, _ := os.ReadFile(maxInotifyInstances); string(now) != string(limit) {
				_ = os.WriteFile(maxInotifyInstances, limit, 0o644)
				t.Errorf("fs.inotify.max_user_instances changed from %s to %s", limit, now)
			}
			p := e.status(strings.TrimSpace(string(uuid)))
			if p.State != "exited" || p.ExitCode == nil || *p.ExitCode != 125 {
				t.Errorf("pod after its failed start: state %s, exit code %v; want exited, 125", p.State, p.ExitCode)
			}
		})
	}
	// With instances to spare again, the same pod runs.
	r := e.ok(e.runArgs("--net=none", "--pull-policy=never", e.image("busybox"), "--", "/bin/echo", "the app ran")...)
	if r.stdout != "the app ran\n" {
		t.Errorf("run after the instances were freed: %q", r.stdout)
	}
}
