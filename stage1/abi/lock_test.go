package abi

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// WaitRunEnded waits while run holds the pod lock, and returns when it lets
// go of it.
func TestWaitRunEnded(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	run, err := os.Open(dir) // run's lock: its own open of the pod directory
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if err := unix.Flock(int(run.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if WaitRunEnded(50 * time.Millisecond) {
		t.Fatal("WaitRunEnded reported run ended while it held the lock")
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = unix.Flock(int(run.Fd()), unix.LOCK_UN)
	}()
	if !WaitRunEnded(10 * time.Second) {
		t.Fatal("WaitRunEnded did not see run let go of the lock")
	}
}
