package guest

import (
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
