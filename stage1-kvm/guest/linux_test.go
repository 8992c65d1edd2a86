package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The host's checks of a bundle's devices and sysctls at create: what the
// guest can make or set passes, anything else is refused with its name.
func TestCheckDeviceAndSysctl(t *testing.T) {
	for _, c := range []struct {
		d    specs.LinuxDevice
		want string // "" if accepted
	}{
		{specs.LinuxDevice{Path: "/dev/fifo", Type: "p"}, ""},
		{specs.LinuxDevice{Path: "/dev/sub/null2", Type: "c", Major: 1, Minor: 3}, ""},
		{specs.LinuxDevice{Path: "/dev/ptmx", Type: "u", Major: 5, Minor: 2}, ""},
		{specs.LinuxDevice{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0}, "/dev/sda (b 8:0) is a host device"},
		{specs.LinuxDevice{Path: "/dev/null", Type: "b", Major: 1, Minor: 3}, "is a host device"},
		{specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, "is a host device"},
		{specs.LinuxDevice{Path: "/dev/../etc/null", Type: "c", Major: 1, Minor: 3}, "under /dev only"},
		{specs.LinuxDevice{Path: "dev/null", Type: "c", Major: 1, Minor: 3}, "under /dev only"},
		{specs.LinuxDevice{Path: "/dev", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "/etc/fifo", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "/dev//fifo", Type: "p"}, ""},
		{specs.LinuxDevice{Path: "/dev/./sub/fifo", Type: "p"}, ""},
		{specs.LinuxDevice{Path: "/dev/../fifo", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "/dev/sub/../../etc/fifo", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "/dev/..", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "/dev/", Type: "p"}, "under /dev only"},
		{specs.LinuxDevice{Path: "//dev/fifo", Type: "p"}, ""},
		{specs.LinuxDevice{Path: "/dev/fifo\x00", Type: "p"}, "under /dev only"},
	} {
		err := CheckDevice(c.d)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckDevice(%+v): %v, want %q", c.d, err, c.want)
		}
	}
	for _, c := range []struct{ k, v, want string }{
		{"net.ipv4.ip_forward", "1", ""},
		{"net.ipv4.conf.eth0.rp_filter", "2", ""},
		{"kernel.shmmax", "1000", ""},
		{"kernel.sem", "250 32000 32 128", ""},
		{"fs.mqueue.msg_max", "20", ""},
		{"kernel.domainname", "d", ""},
		{"kernel.panic", "1", "not in a separate kernel namespace"},
		{"vm.overcommit_memory", "1", "not in a separate kernel namespace"},
		{"net.ipv4../../../kernel.panic", "1", "is not a sysctl"},
		{"net/ipv4/ip_forward", "1", "is not a sysctl"},
		{"net.ipv4.ip_forward", "1\n0", "is not a sysctl"},
		{"", "1", "is not a sysctl"},
	} {
		err := CheckSysctl(c.k, c.v)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckSysctl(%q, %q): %v, want %q", c.k, c.v, err, c.want)
		}
	}
}

// makeDevices makes nodes in the app's /dev only: a device path through a
// symlink of the rootfs (the guest mounts a tmpfs on /dev, but a rootfs whose
// /dev is a link gets it elsewhere) that leads out of /dev is refused, and
// nothing is made at the link's target.
func TestMakeDevicesStaysInDev(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"dev/sub", "etc", "outside"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"dev/abs": "/etc", "dev/rel": "../../../outside", "dev/fd": "/proc/self/fd", "dev/in": "sub"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ path, want, made string }{
		{"/dev//f1", "", "dev/f1"},
		{"/dev/./sub/f2", "", "dev/sub/f2"},
		{"/dev/in/f3", "", "dev/sub/f3"}, // a link that stays in /dev
		{"/dev/new/f4", "", "dev/new/f4"},
		{"/dev/abs/f5", "leads out of /dev (to /etc/f5)", ""},
		{"/dev/rel/f6", "leads out of /dev (to /outside/f6)", ""},
		{"/dev/fd/f7", "leads out of /dev", ""},
		{"/dev/../etc/f8", "under /dev only", ""},
	} {
		err := makeDevices(root, []specs.LinuxDevice{{Path: c.path, Type: "p"}})
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("makeDevices(%s): %v, want %q", c.path, err, c.want)
		}
		if c.made != "" {
			if st, err := os.Lstat(filepath.Join(root, c.made)); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("makeDevices(%s): no fifo at %s (%v)", c.path, c.made, err)
			}
		}
	}
	for _, d := range []string{"etc", "outside"} {
		if es, _ := os.ReadDir(filepath.Join(root, d)); len(es) > 0 {
			t.Errorf("makeDevices made %s in /%s", es[0].Name(), d)
		}
	}
}
