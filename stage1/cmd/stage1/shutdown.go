package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/appexec"
)

// podShutdownMain is the pod's systemd-shutdown: the stage1 image links
// /usr/lib/systemd/systemd-shutdown to this binary, and the pod's systemd,
// its PID 1, execs it as its very last step when the pod halts (skiff stop),
// exits (its app ended; `systemctl exit N`) or reboots:
//
//	systemd-shutdown VERB [--timeout=USECus] [--exit-code=N] [--log-...]
//
// It does what systemd's own does in a container, where there is nothing
// to unmount, sync, detach or kexec (the kernel ends the pod's namespaces
// when PID 1 ends): it sends SIGTERM (and SIGCONT) to every process left in
// the pod, reaps them and waits up to the timeout for them to be gone, then
// SIGKILL; then "exit" ends PID 1 with the exit code, and "halt",
// "poweroff" and "reboot" call reboot(2), which ends a PID namespace's init
// as the killed-by-signal status stage1 reads (SIGINT, SIGHUP). Systemd's
// binary costs about 30 ms here (its 20 libraries, mlockall, a forked
// executor for the system-shutdown hook directories, which the stage1 rootfs
// does not have); this costs one start of the stage1 binary (issue #18).
func podShutdownMain(args []string) error {
	if os.Getpid() != 1 {
		return errors.New("systemd-shutdown: only the pod's PID 1 (its systemd) runs this, as its last step")
	}
	verb, timeout, code, err := parseShutdown(args)
	if err != nil {
		return err
	}
	appexec.EndAll(unix.SIGTERM, timeout, false)
	appexec.EndAll(unix.SIGKILL, timeout, false)
	var cmd int
	switch verb {
	case "exit":
		os.Exit(code)
	case "halt":
		cmd = unix.LINUX_REBOOT_CMD_HALT
	case "poweroff":
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	default: // reboot, kexec: a PID namespace can only restart
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		// No CAP_SYS_BOOT: ending PID 1 ends the pod all the same (as
		// systemd's does in a container).
		fmt.Fprintf(os.Stderr, "systemd-shutdown: reboot(%s): %v; exiting\n", verb, err)
	}
	os.Exit(0)
	return nil
}

// parseShutdown reads systemd-shutdown's command line as systemd 252 passes
// it. Options it has no use for (logging) are accepted and ignored.
func parseShutdown(args []string) (verb string, timeout time.Duration, code int, err error) {
	timeout = 90 * time.Second // systemd's default
	for _, a := range args {
		name, val, _ := strings.Cut(a, "=")
		switch {
		case !strings.HasPrefix(a, "-"):
			if verb != "" {
				return "", 0, 0, fmt.Errorf("systemd-shutdown: two verbs, %q and %q", verb, a)
			}
			verb = a
		case name == "--timeout":
			us, perr := strconv.ParseUint(strings.TrimSuffix(val, "us"), 10, 63)
			if perr != nil || us > uint64(time.Hour/time.Microsecond) {
				return "", 0, 0, fmt.Errorf("systemd-shutdown: bad --timeout %q", val)
			}
			timeout = time.Duration(us) * time.Microsecond
		case name == "--exit-code":
			c, perr := strconv.Atoi(val)
			if perr != nil || c < 0 || c > 255 {
				return "", 0, 0, fmt.Errorf("systemd-shutdown: bad --exit-code %q", val)
			}
			code = c
		}
	}
	switch verb {
	case "exit", "halt", "poweroff", "reboot", "kexec":
		return verb, timeout, code, nil
	}
	return "", 0, 0, fmt.Errorf("systemd-shutdown: unknown verb %q (exit, halt, poweroff, reboot, kexec)", verb)
}
