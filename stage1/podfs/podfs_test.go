package podfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMountsOrderAndOptions(t *testing.T) {
	a := App{
		Root:     "/opt/stage2/web/rootfs",
		Mounts:   []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}}},
		Readonly: true,
	}
	ms, err := ResolveMounts("/s1", a)
	if err != nil {
		t.Fatal(err)
	}
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
	if ms, err = ResolveMounts("/s1", a); err != nil {
		t.Fatal(err)
	}
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

// The image's files below /proc, /sys and /dev are hidden by the mounts
// there, and a volume's below it by its source: symlinks in them move
// nothing. A mount over the app's root is refused.
func TestMountsBelowMountsIgnoreTheImage(t *testing.T) {
	s1 := t.TempDir()
	root := "/app/rootfs"
	rootfs := filepath.Join(s1, root)
	for _, l := range [][2]string{{"/decoy/kcore", "proc/kcore"}, {"../decoy/sys", "proc/sys"},
		{"/decoy/fw", "sys/firmware"}, {"/decoy/null", "dev/null"}, {"/", "vol"}, {"/decoy/sub", "data/sub"}} {
		symlink(t, l[0], filepath.Join(rootfs, l[1]))
	}
	src := t.TempDir() // a volume whose own symlink climbs to / and down to /etc
	symlink(t, "../../../etc", filepath.Join(src, "sub"))
	a := App{Root: root, Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: src, Options: []string{"rbind"}},
		{Destination: "/data/sub/x", Type: "tmpfs", Source: "tmpfs"}},
		MaskedPaths: []string{"/proc/kcore", "/proc/keys", "/sys/firmware"}, ReadonlyPaths: []string{"/proc/sys"}}
	ms, err := ResolveMounts(s1, a)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, strings.TrimPrefix(m.Destination, root))
		if strings.Contains(m.Destination, "decoy") {
			t.Errorf("mount on the image's decoy: %+v", m)
		}
	}
	for _, want := range []string{"/dev/null", "/proc/sys", "/etc/x"} {
		if !strings.Contains(strings.Join(got, " ")+" ", want+" ") {
			t.Errorf("no mount at %s: %q", want, got)
		}
	}
	if _, err := os.Stat("/proc/keys"); err == nil && !strings.Contains(strings.Join(got, " ")+" ", "/proc/keys ") {
		t.Errorf("/proc/keys is not masked: %q", got)
	}
	a.Mounts = []specs.Mount{{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind"}}}
	if _, err := ResolveMounts(s1, a); err == nil || !strings.Contains(err.Error(), "/vol") {
		t.Errorf("a volume over the app's root: %v, want an error naming /vol", err)
	}
}
