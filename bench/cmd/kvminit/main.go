// Command kvminit is the init of skiffbench's bare QEMU boot (the kvm-boot
// scenario): a static PID 1 in an initramfs of its own that mounts nothing,
// writes "hi" to the console and powers the VM off, so the boot it ends is
// the guest kernel's alone. Build it with CGO_ENABLED=0 (scripts/bench does).
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kvminit: not PID 1: this is a VM's init (it powers the machine off); skiffbench boots it in QEMU")
		os.Exit(2)
	}
	con, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		halt(err) // no console: nothing can tell the host why
	}
	if _, err := con.WriteString("hi\n"); err != nil {
		halt(err)
	}
	// tcdrain: the line leaves the UART before the power goes.
	if err := unix.IoctlSetInt(int(con.Fd()), unix.TCSBRK, 1); err != nil {
		fmt.Fprintf(con, "kvminit: drain the console: %v\n", err)
	}
	halt(unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
}

// halt reports why the power-off did not happen and exits: the kernel then
// panics ("Attempted to kill init"), which skiffbench's check catches, and
// panic=-1 with QEMU's -no-reboot ends the VM.
func halt(err error) {
	fmt.Fprintf(os.Stderr, "kvminit: %v\n", err)
	os.Exit(1)
}
