package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/stage1/podfs"
)

// What an OCI bundle's linux section asks of the guest's kernel (OCI mode):
// its sysctls and its device nodes. The host checked both at create
// (CheckDevice, CheckSysctl), before anything ran.

// GuestDevices are the character devices the guest's kernel has built in,
// with the same numbers and meaning as the host's: the only linux.devices
// a VM can honour. A host device (a disk, a GPU, a serial port, /dev/kvm)
// is not in the guest, and a module the initramfs does not carry
// (/dev/fuse, /dev/net/tun) has no driver there.
var GuestDevices = map[[2]int64]string{
	{1, 3}: "/dev/null", {1, 5}: "/dev/zero", {1, 7}: "/dev/full", {1, 8}: "/dev/random",
	{1, 9}: "/dev/urandom", {5, 0}: "/dev/tty", {5, 2}: "/dev/ptmx",
}

// CheckDevice tells whether the guest can make device d: a FIFO, or one of
// GuestDevices, at a path under /dev (elsewhere the node would be made in
// the bundle's rootfs, on the host, over 9p).
func CheckDevice(d specs.LinuxDevice) error {
	p := filepath.Clean(d.Path)
	if !filepath.IsAbs(d.Path) || strings.Contains(d.Path, "..") || strings.ContainsRune(d.Path, 0) || !strings.HasPrefix(p, "/dev/") {
		return fmt.Errorf("linux.devices: %s: the kvm stage1 makes device nodes under /dev only (absolute, without '..'); move it there", d.Path)
	}
	switch d.Type {
	case "p":
		return nil
	case "c", "u":
		if _, ok := GuestDevices[[2]int64{d.Major, d.Minor}]; ok {
			return nil
		}
	}
	return fmt.Errorf("linux.devices: %s (%s %d:%d) is a host device, which the kvm stage1 cannot pass into its VM (the guest's kernel has only %s); remove it (podman: no --device), or use skiff-oci's default stage1",
		d.Path, d.Type, d.Major, d.Minor, strings.Join(sortedValues(GuestDevices), ", "))
}

func sortedValues(m map[[2]int64]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// CheckSysctl tells whether key=value can be set in the guest: runc's rule
// (a sysctl of a kernel namespace the container has of its own: net.*,
// the IPC ones, the UTS ones), which in a VM are the guest kernel's.
// The guest's own kernel would take any, but a bundle runc refuses is
// refused here too.
func CheckSysctl(key, value string) error {
	if key == "" || strings.ContainsAny(key, "/\x00") || strings.Contains(key, "..") || strings.HasPrefix(key, ".") || strings.ContainsAny(value, "\n\x00") {
		return fmt.Errorf("linux.sysctl: %q=%q is not a sysctl; fix its name or value", key, value)
	}
	switch {
	case strings.HasPrefix(key, "net."), strings.HasPrefix(key, "fs.mqueue."),
		strings.HasPrefix(key, "kernel.shm"), strings.HasPrefix(key, "kernel.msg"),
		key == "kernel.sem", key == "kernel.hostname", key == "kernel.domainname":
		return nil
	}
	return fmt.Errorf("linux.sysctl: %q is not in a separate kernel namespace (runc's rule: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, kernel.hostname, kernel.domainname); remove it", key)
}

// setSysctls writes the bundle's sysctls into the guest's /proc/sys, in
// order (after the NICs are configured: net.ipv4.conf.eth0.* needs eth0).
func setSysctls(sysctl map[string]string) error {
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := CheckSysctl(k, sysctl[k]); err != nil {
			return err
		}
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(sysctl[k]), 0); err != nil {
			return fmt.Errorf("linux.sysctl: %s=%s: %w", k, sysctl[k], err)
		}
	}
	return nil
}

// makeDevices makes the bundle's device nodes in the app's /dev (at
// appRoot, the tmpfs podfs mounted there), as CheckDevice allowed them. A
// node already there with the same type and number (podfs's /dev/null and
// the like) is kept.
func makeDevices(appRoot string, devs []specs.LinuxDevice) error {
	for _, d := range devs {
		if err := CheckDevice(d); err != nil {
			return err
		}
		r, err := podfs.Resolve(appRoot, d.Path)
		if err != nil {
			return fmt.Errorf("linux.devices: %s: %w", d.Path, err)
		}
		if !strings.HasPrefix(r, "/dev/") {
			return fmt.Errorf("linux.devices: %s leads out of /dev (to %s) through the image's links", d.Path, r)
		}
		p := filepath.Join(appRoot, r)
		mode := uint32(unix.S_IFIFO)
		if d.Type != "p" {
			mode = unix.S_IFCHR
		}
		perm := uint32(0o666)
		if d.FileMode != nil {
			perm = uint32(d.FileMode.Perm())
		}
		dev := int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
		if d.Type == "p" {
			dev = 0
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil {
			if st.Mode&unix.S_IFMT == mode && (d.Type == "p" || st.Rdev == uint64(dev)) {
				continue
			}
			return fmt.Errorf("linux.devices: %s: something else is there already", d.Path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("linux.devices: %s: %w", d.Path, err)
		}
		if err := unix.Mknod(p, mode|perm, dev); err != nil {
			return fmt.Errorf("linux.devices: %s: %w", d.Path, err)
		}
		uid, gid := -1, -1
		if d.UID != nil {
			uid = int(*d.UID)
		}
		if d.GID != nil {
			gid = int(*d.GID)
		}
		err = unix.Lchown(p, uid, gid)
		if err == nil {
			err = unix.Chmod(p, perm) // not the umask's
		}
		if err != nil {
			return errors.Join(fmt.Errorf("linux.devices: %s: %w", d.Path, err), os.Remove(p))
		}
	}
	return nil
}
