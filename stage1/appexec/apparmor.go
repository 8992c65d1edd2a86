package appexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/abi"
)

// AppArmorEnabled reports whether the kernel enforces AppArmor, as runc (and
// libapparmor) decide it: securityfs has apparmor/ and the module's
// "enabled" parameter is Y.
func AppArmorEnabled() bool {
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
		return false
	}
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && len(b) > 1 && b[0] == 'Y'
}

// CheckAppArmor refuses a profile the host cannot apply. runc tries and its
// create fails ("write /proc/self/attr/exec: invalid argument"); the same
// outcome, said plainly and before anything runs.
func CheckAppArmor(profile string) error {
	if profile == "" || AppArmorEnabled() {
		return nil
	}
	return fmt.Errorf("process.apparmorProfile %q: AppArmor is not enabled on this host, so the profile cannot be applied (runc fails alike); remove it (podman: --security-opt apparmor=unconfined) or enable AppArmor", profile)
}

// openAppArmorExec opens this thread's AppArmor exec attribute, for a
// non-empty profile: attr/apparmor/exec, or attr/exec on kernels without the
// per-module directory (runc's order). It is opened through /proc/thread-self
// of the pod's procfs (checked to be one), before the app's tree is entered:
// a write to it takes effect at this thread's next exec.
func openAppArmorExec(profile string) (*os.File, error) {
	if profile == "" {
		return nil, nil
	}
	if !AppArmorEnabled() {
		return nil, CheckAppArmor(profile)
	}
	attr := "/proc/thread-self/attr/apparmor/exec"
	if _, err := os.Stat(attr); errors.Is(err, os.ErrNotExist) {
		attr = "/proc/thread-self/attr/exec"
	}
	fd, err := unix.Open(attr, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("apparmor profile %q: open %s: %w", profile, attr, err)
	}
	f := os.NewFile(uintptr(fd), attr)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("apparmor profile %q: %s is not on procfs", profile, attr)
	}
	return f, nil
}

// applyAppArmor asks the kernel to confine the next exec of this thread in
// profile (aa_change_onexec): "exec PROFILE" written to the attribute
// openAppArmorExec opened. An error means the app must not run.
func applyAppArmor(f *os.File, profile string) error {
	if profile == "" {
		return nil
	}
	if f == nil {
		return fmt.Errorf("apparmor profile %q: the exec attribute is not open", profile)
	}
	if _, err := f.Write([]byte("exec " + profile)); err != nil {
		return fmt.Errorf("apparmor profile %q cannot be applied: %w (is it loaded? apparmor_parser -r PROFILE-FILE)", profile, err)
	}
	return nil
}

// ociProcess reports whether app's config.json is an OCI bundle's process
// (abi.OCIProcessMarker, written by the front end).
func ociProcess(app string) bool {
	fi, err := os.Lstat(filepath.Join(AppsDir, app, abi.OCIProcessMarker))
	return err == nil && fi.Mode().IsRegular()
}
