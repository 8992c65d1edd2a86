package podfs

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMountsOrderAndOptions(t *testing.T) {
	a := App{
		Root:     "/opt/stage2/web/rootfs",
		Mounts:   []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}}},
		Readonly: true,
	}
	ms := Mounts("/s1", a)
	if ms[0].Destination != a.Root+"/proc" || ms[1].Type != "sysfs" || ms[2].Destination != a.Root+"/dev" {
		t.Fatalf("first mounts: %+v", ms[:3])
	}
	var data, last specs.Mount
	for _, m := range ms {
		if m.Destination == a.Root+"/data" {
			data = m
		}
	}
	last = ms[len(ms)-1]
	if data.Source != "/srv/data" {
		t.Errorf("the volume is not mounted under the app's root: %+v", ms)
	}
	if last.Destination != a.Root || last.Source != "/s1"+a.Root || last.Options[1] != "ro" {
		t.Errorf("--readonly-rootfs: the last mount is %+v, want a read-only rebind of the rootfs", last)
	}
	// A pod with a user namespace binds the host's /sys and hides its cgroups.
	a.UserNS = true
	ms = Mounts("/s1", a)
	if ms[1].Type != "bind" || ms[1].Source != "/sys" || ms[3].Destination != a.Root+"/sys/fs/cgroup" || ms[3].Type != "tmpfs" {
		t.Errorf("userns /sys: %+v", ms[:4])
	}
}

func TestFromSpec(t *testing.T) {
	spec := &specs.Spec{
		Root: &specs.Root{Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/cache", Type: "bind", Source: "volumes/cache", Options: []string{"rbind"}},
			{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"bind"}},
		},
		Linux: &specs.Linux{MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}},
	}
	a := FromSpec("/opt/stage2/x/rootfs", "/pods/U", spec)
	if !a.Readonly || a.Mounts[0].Source != "/pods/U/volumes/cache" || a.Mounts[1].Source != "/srv/data" ||
		a.MaskedPaths[0] != "/proc/kcore" || a.ReadonlyPaths[0] != "/proc/sys" {
		t.Errorf("FromSpec: %+v", a)
	}
	if spec.Mounts[0].Source != "volumes/cache" {
		t.Errorf("FromSpec changed the spec: %+v", spec.Mounts[0])
	}
}
