package main

import (
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOwnCgroupProcs(t *testing.T) {
	for _, c := range []struct {
		self string
		want []string
	}{
		{"0::/system.slice/web.service/supervisor\n", []string{
			"/sys/fs/cgroup/system.slice/web.service/supervisor/cgroup.procs",
			"/sys/fs/cgroup/unified/system.slice/web.service/supervisor/cgroup.procs"}},
		{"9:name=systemd:/user.slice\n4:memory:/process_api/x\n0::/\n", []string{
			"/sys/fs/cgroup/cgroup.procs",
			"/sys/fs/cgroup/unified/cgroup.procs",
			"/sys/fs/cgroup/memory/process_api/x/cgroup.procs"}},
		{"3:cpu,cpuacct:/a\n", []string{"/sys/fs/cgroup/cpu,cpuacct/a/cgroup.procs"}},
		// Malformed or escaping lines give nothing.
		{"garbage\n4:memory:relative\n5:pids:/a/../../etc\n", nil},
	} {
		if got := ownCgroupProcs([]byte(c.self)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ownCgroupProcs(%q) = %q, want %q", c.self, got, c.want)
		}
	}
}

// TestWarmCgroupMovesStaysPut: the writes keep this process where it is (as
// root, on the host's own cgroups).
func TestWarmCgroupMovesStaysPut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writes to cgroup.procs need root")
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	stop := warmCgroupMoves(runOpts{}, warmMax)
	time.Sleep(20 * warmPeriod)
	stop()
	stop() // a second stop is harmless
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("cgroups changed:\n%s\nto\n%s", before, after)
	}
}

// TestWarmCgroupMovesTakeTurns: while another process holds the lock, no
// write; once it lets go, this one writes.
func TestWarmCgroupMovesTakeTurns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writes to cgroup.procs need root")
	}
	old := warmLock
	warmLock = filepath.Join(t.TempDir(), "run", "cgroup-warm.lock")
	defer func() { warmLock = old }()
	other := openWarmLock()
	if other == nil {
		t.Fatal("cannot open the lock")
	}
	defer other.Close()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	stop := warmCounting(runOpts{}, warmMax, &writes)
	defer stop()
	time.Sleep(20 * warmPeriod)
	if n := writes.Load(); n != 0 {
		t.Fatalf("%d writes while another process held the lock", n)
	}
	other.Close()
	for i := 0; i < 500 && writes.Load() == 0; i++ {
		time.Sleep(warmPeriod)
	}
	if writes.Load() == 0 {
		t.Fatal("no write after the lock was let go")
	}
}
