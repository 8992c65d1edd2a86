package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// QEMU is the process the guest talks to: a guest that breaks out of its
// VM runs as QEMU. So QEMU gets no more than the shares need.
//
//   - Capabilities: those the 9p passthrough shares need to keep owners and
//     modes and to reach every file of an image (qemuCaps), and no others:
//     without CAP_MKNOD the guest cannot make a device node on the host,
//     without CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE,
//     CAP_SETUID... a QEMU taken over cannot mount, reconfigure the
//     network, trace or load anything. The bounding set is cut too, and
//     no_new_privs is set, so nothing QEMU could exec gets them back.
//   - QEMU's own seccomp sandbox (-sandbox, qemuSandbox): no obsolete system
//     calls, no privilege changes, no new processes, no scheduler or
//     resource changes.
//
// The helper that does this is this binary called as qemu-exec: Go cannot
// run code between fork and exec, so run starts it, and it drops the
// capabilities on its (locked) thread and execs QEMU from that thread.
var qemuCaps = []capability.Cap{
	capability.CAP_CHOWN, capability.CAP_DAC_OVERRIDE, capability.CAP_DAC_READ_SEARCH,
	capability.CAP_FOWNER, capability.CAP_FSETID,
}

// qemuSandbox is QEMU's -sandbox option.
const qemuSandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// qemuCommand is QEMU (from the stage1 image's dir, through its own loader)
// with args, started through qemu-exec.
func qemuCommand(dir string, args []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append([]string{"qemu-exec", filepath.Join(dir, "ld.so"), "--library-path", filepath.Join(dir, "lib"),
		filepath.Join(dir, "qemu-system-x86_64"), "-sandbox", qemuSandbox}, args...)
	cmd := exec.Command(self)
	cmd.Args = append([]string{"stage1-kvm"}, argv...)
	return cmd, nil
}

// qemuExecMain: qemu-exec PROGRAM ARGS... Drops every capability but
// qemuCaps (effective, permitted, inheritable, ambient and bounding), sets
// no_new_privs and execs PROGRAM.
func qemuExecMain(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: qemu-exec PROGRAM [ARGS...]")
	}
	// Capabilities and no_new_privs are per thread; exec from the same one.
	runtime.LockOSThread()
	if err := dropCaps(qemuCaps); err != nil {
		return fmt.Errorf("qemu: drop capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("qemu: no_new_privs: %w", err)
	}
	err := syscall.Exec(args[0], args, os.Environ())
	return fmt.Errorf("qemu: exec %s: %w", args[0], err)
}

// dropCaps leaves this thread keep alone.
func dropCaps(keep []capability.Cap) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	c.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
	c.Set(capability.CAPS|capability.BOUNDING, keep...)
	return c.Apply(capability.CAPS | capability.BOUNDS | capability.AMBS)
}
