package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// stopGrace is how long stop waits for QEMU to end on SIGTERM before it kills it.
const stopGrace = 10 * time.Second

// vmPid returns the pid of the pod's QEMU from the pid file, or 0 when that
// process is gone (or is no longer this pod's QEMU: its command line names
// the pod).
func vmPid(uuid string) (int, error) {
	b, err := os.ReadFile(abi.PIDFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pod pid file holds %q", strings.TrimSpace(string(b)))
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(vmName(uuid))) {
		return 0, nil
	}
	return pid, nil
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has ended already.
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// waitGone waits until pid has ended, at most d.
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return !alive(pid)
}

// stopMain: stop [--force] UUID. Ends the pod's VM: SIGTERM to QEMU (it
// exits at once; the apps get no SIGTERM of their own yet), SIGKILL after a
// grace period, or at once with --force.
func stopMain(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	force := fs.Bool("force", false, "kill the pod at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: stop [--force] UUID")
	}
	pid, err := vmPid(fs.Arg(0))
	if err != nil {
		return err
	}
	if pid == 0 {
		return nil
	}
	if err := os.WriteFile(s1Stop, nil, 0o644); err != nil {
		return fmt.Errorf("mark the pod as stopping: %w", err)
	}
	sig := unix.SIGTERM
	if *force {
		sig = unix.SIGKILL
	}
	_ = unix.Kill(pid, sig)
	if !waitGone(pid, stopGrace) {
		_ = unix.Kill(pid, unix.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	return nil
}

// gcMain: gc UUID. run's mounts live in its own mount namespace and there is
// no network yet, so all that can be left is the QEMU process itself (QEMU
// dies with run through its parent-death signal; this covers the rest).
func gcMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: gc UUID")
	}
	pid, err := vmPid(args[0])
	if err != nil || pid == 0 {
		return err
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	if !waitGone(pid, 5*time.Second) {
		return fmt.Errorf("qemu (pid %d) still there after SIGKILL", pid)
	}
	return nil
}

// enterMain: not yet (it needs a vsock agent in the guest).
func enterMain(args []string) error {
	return errors.New("enter: the kvm stage1 does not support enter yet")
}
