package guest

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/appexec"
)

// Shutdown replaces systemd-shutdown, which the pod's systemd execs as PID 1
// once the pod is over (the apps have ended and their units have recorded
// their exits): it ends what is left, flushes the 9p caches to the host and
// powers the VM off. systemd's own would unmount every file system one by
// one first, which takes seconds under TCG and buys nothing here: the guest
// has no disk, and the host undoes the mounts behind the shares.
func Shutdown() {
	unix.Sync()
	appexec.EndAll(unix.SIGTERM, time.Second, true)
	appexec.EndAll(unix.SIGKILL, time.Second, true)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
